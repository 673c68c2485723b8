//! `selfsup data inspect|preview`.
use selfsup::augment::ops::Planar;
use selfsup::augment::rng::sample_rng;
use selfsup::augment::{Recipe, ViewPipeline};
use selfsup::augment::recipe::RecipeParams;
use selfsup::analysis::tiles::TileSheet;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum DataCmd {
    /// Count, classes, image size, channels and per-channel mean/std of a dataset.
    Inspect {
        /// Dataset spec: folder:PATH, cifar10:PATH, cifar100:PATH, idx:PATH, fashion-mnist, synthetic[:N] (+ @train/@test).
        spec: String,
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// A PNG grid of original / view 1 / view 2 for a few samples.
    Preview {
        spec: String,
        #[arg(long, default_value = "byol")]
        recipe: String,
        #[arg(long, default_value = "preview.png")]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// View side in pixels (0 = the recipe's default).
        #[arg(long, default_value_t = 0)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Inspect { spec, json } => {
            let ds = selfsup::data::open(&spec)?;
            let stats = selfsup::data::stats::compute(&ds, 20_000)?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                println!("source    {}", ds.source);
                println!("count     {}", stats.count);
                println!("labelled  {}", stats.labelled);
                println!("classes   {}", stats.classes);
                println!("size      {}x{}{}", stats.height, stats.width, if stats.uniform_size { "" } else { " (first image; sizes vary)" });
                println!("channels  {}", stats.channels);
                println!("mean      {}", stats.mean.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" "));
                println!("std       {}", stats.std.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" "));
                for (name, n) in stats.class_names.iter().zip(&stats.class_counts) {
                    println!("  {name:<16} {n}");
                }
            }
            Ok(())
        }
        DataCmd::Preview { spec, recipe, out, samples, size, seed } => preview(&spec, &recipe, &out, samples, size, seed),
    }
}

fn preview(spec: &str, recipe: &str, out: &std::path::Path, samples: usize, size: usize, seed: u64) -> anyhow::Result<()> {
    let ds = selfsup::data::open(spec)?;
    // previews show pixels, so the views are not normalised
    let recipe = Recipe::named(recipe, &RecipeParams { crop_size: size, mean: [0.0; 3], std: [1.0; 3], ..Default::default() })?;
    let views: Vec<ViewPipeline> = recipe.views.iter().take(2).cloned().map(ViewPipeline::new).collect();
    let rows = samples.min(ds.len()).max(1);
    let mut sheet = TileSheet::new(rows, 1 + views.len(), 96, 4);
    // a seeded random choice of samples, so a sorted folder does not show one class only
    let picks = rand::seq::index::sample(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed), ds.len(), rows).into_vec();
    for (r, &idx) in picks.iter().enumerate() {
        let img = ds.image(idx)?;
        sheet.paste(r, 0, &Planar::from_image(&img));
        for (v, view) in views.iter().enumerate() {
            let mut buf = vec![0.0f32; view.output_len()];
            let mut rng = sample_rng(seed, 0, idx as u64, v as u64);
            view.apply(&img, &mut rng, &mut buf);
            let s = view.cfg.crop_size;
            sheet.paste(r, v + 1, &Planar { height: s, width: s, data: buf });
        }
    }
    sheet.save_png(out)?;
    eprintln!("wrote {} ({rows} samples: original | view 1 | view 2)", out.display());
    Ok(())
}
