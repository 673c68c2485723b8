//! `selfsup launch --nproc N [--nnodes M --node-rank R --master HOST:PORT] -- train …`: starts N
//! processes of this binary on this machine as ranks R·N … R·N+N−1 of an M·N-process data-parallel
//! job (rendezvous through a TCPStore at --master, served by rank 0). If one process fails, the
//! others are given --grace seconds to stop on their own (a dead peer breaks their collectives),
//! then killed; the launcher exits with the first failure's code. SIGTERM is passed on.
use selfsup::backend::dist::{Backend, ENV_BACKEND, ENV_MASTER, ENV_RANK, ENV_WORLD};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct LaunchArgs {
    /// Processes on this machine (one per GPU; `--device cuda` picks cuda:<local rank>).
    #[arg(long, default_value_t = 1)]
    nproc: usize,
    /// Machines in the job.
    #[arg(long, default_value_t = 1)]
    nnodes: usize,
    /// This machine's index (0 hosts rank 0 and the rendezvous store).
    #[arg(long, default_value_t = 0)]
    node_rank: usize,
    /// Rendezvous HOST:PORT (rank 0's machine). Default: 127.0.0.1 and a free port (one machine).
    #[arg(long)]
    master: Option<String>,
    /// The process group for GPU tensors: auto (NCCL with `--device cuda` when built with it, else
    /// Gloo), gloo or nccl. CPU tensors always use Gloo. Naming gloo or nccl makes even `--nproc 1`
    /// join a process group (a check of a machine's setup before a larger job).
    #[arg(long)]
    backend: Option<String>,
    /// Seconds the surviving processes get to exit after one fails, before they are killed.
    #[arg(long, default_value_t = 60)]
    grace: u64,
    /// The selfsup command each process runs, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn run(a: LaunchArgs) -> anyhow::Result<()> {
    if a.nproc == 0 || a.nnodes == 0 {
        return Err(selfsup::Error::usage("--nproc and --nnodes must be at least 1").into());
    }
    if a.node_rank >= a.nnodes {
        return Err(selfsup::Error::usage(format!("--node-rank {} must be below --nnodes {}", a.node_rank, a.nnodes)).into());
    }
    if a.nnodes > 1 && a.master.is_none() {
        return Err(selfsup::Error::usage("a multi-machine job needs --master HOST:PORT (rank 0's machine)").into());
    }
    if let Some(b) = &a.backend {
        Backend::parse(b).map_err(|_| selfsup::Error::usage(format!("--backend {b}: expected auto, gloo or nccl")))?;
    }
    let master = match a.master {
        Some(m) => m,
        None => format!("127.0.0.1:{}", free_port()?),
    };
    let world = a.nproc * a.nnodes;
    let exe = std::env::current_exe()?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for local in 0..a.nproc {
        let rank = a.node_rank * a.nproc + local;
        let mut command = Command::new(&exe);
        if let Some(b) = a.backend.as_deref().filter(|b| *b != "auto") {
            command.env(ENV_BACKEND, b);
        }
        let child = command
            .args(&a.command)
            .env(ENV_RANK, rank.to_string())
            .env(ENV_WORLD, world.to_string())
            .env(ENV_MASTER, &master)
            .env("SELFSUP_LOCAL_RANK", local.to_string())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start rank {rank}: {e}"))?;
        children.push((rank, child));
    }
    eprintln!("launched ranks {}..{} of {world} (rendezvous {master})", a.node_rank * a.nproc, a.node_rank * a.nproc + a.nproc - 1);
    selfsup::train::signals::install();
    let mut first_failure: Option<(usize, i32)> = None;
    let mut failed_at: Option<Instant> = None;
    let mut running: Vec<bool> = vec![true; children.len()];
    let mut forwarded = false;
    while running.iter().any(|r| *r) {
        for (i, (rank, child)) in children.iter_mut().enumerate() {
            if !running[i] {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                running[i] = false;
                let code = status.code().unwrap_or(1);
                if code != 0 && first_failure.is_none() {
                    eprintln!("rank {rank} exited with code {code}; stopping the other ranks");
                    first_failure = Some((*rank, code));
                    failed_at = Some(Instant::now());
                }
            }
        }
        selfsup::train::signals::pass_on_sigterm(&mut forwarded, children.iter().zip(&running).filter(|(_, r)| **r).map(|((_, child), _)| child.id()));
        if let Some(t) = failed_at {
            if t.elapsed() > Duration::from_secs(a.grace) {
                for (i, (rank, child)) in children.iter_mut().enumerate() {
                    if running[i] {
                        eprintln!("rank {rank} did not stop within {} s; killing it", a.grace);
                        let _ = child.kill();
                    }
                }
                failed_at = None;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match first_failure {
        Some((rank, code)) => Err(selfsup::Error::Exit { code, message: format!("rank {rank} failed (exit code {code})") }.into()),
        None => Ok(()),
    }
}
