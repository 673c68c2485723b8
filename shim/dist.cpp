// torch's own c10d from Rust (see ../shared/notes/c10d.md): a TCPStore rendezvous, a Gloo process
// group and, for CUDA tensors, an NCCL one beside it (as torch's "cpu:gloo,cuda:nccl"), and the
// collectives the trainer needs — in-place all-reduce (gradients), all-gather with a gradient
// (synchronised BatchNorm's statistics, negatives from every rank), broadcast and barrier. Each
// collective goes to the group of its tensor's device: NCCL for CUDA tensors when it was asked
// for at init, Gloo otherwise. Compiled only when gloo's headers exist
// (Debian's libgloo-dev), NCCL only when CUDA's and NCCL's headers exist (build.rs); otherwise
// the entry points report what is missing.
// Every entry point catches all C++ exceptions (they must never cross into Rust).
#include <torch/torch.h>
#include <string>

#ifdef SELFSUP_HAVE_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <algorithm>
#include <memory>
#endif
#ifdef SELFSUP_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

extern "C" const char *selfsup_last_error();
void selfsup_set_error(const std::string &msg);

#define DIST_TRY try {
#define DIST_CATCH                                   \
  return 0;                                          \
  }                                                  \
  catch (const c10::Error &e) {                      \
    selfsup_set_error(e.what_without_backtrace());   \
    return 1;                                        \
  }                                                  \
  catch (const std::exception &e) {                  \
    selfsup_set_error(e.what());                     \
    return 1;                                        \
  }                                                  \
  catch (...) {                                      \
    selfsup_set_error("unknown C++ exception");      \
    return 1;                                        \
  }

#ifdef SELFSUP_HAVE_GLOO
namespace {
c10::intrusive_ptr<c10d::Store> g_store;
c10::intrusive_ptr<c10d::Backend> g_gloo;
// set only when init asked for NCCL: then it carries every collective on CUDA tensors
c10::intrusive_ptr<c10d::Backend> g_nccl;
// DDP's gradient reducer (made on request): the two backends as one ProcessGroup
c10::intrusive_ptr<c10d::ProcessGroup> g_group;
std::unique_ptr<c10d::Reducer> g_reducer;

// The process group for a collective on `t`: NCCL for a CUDA tensor when there is one, else Gloo
// (which also handles CUDA tensors, through host copies). `wait()` on an NCCL work makes the
// current stream wait for the collective, without blocking the host.
c10d::Backend &pg_for(const at::Tensor &t) {
  if (!g_gloo) throw std::runtime_error("the process group is not initialised");
  return t.is_cuda() && g_nccl ? *g_nccl : *g_gloo;
}

// Gloo wants dense contiguous tensors; gradients may arrive as expanded views.
void all_reduce_sum_inplace(at::Tensor &t) {
  std::vector<at::Tensor> v{t};
  pg_for(t).allreduce(v)->wait();
}

at::Tensor all_gather_cat(const at::Tensor &x) {
  auto local = x.contiguous();
  auto &pg = pg_for(local);
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < pg.getSize(); ++r) out[0].push_back(at::empty_like(local));
  std::vector<at::Tensor> in{local};
  pg.allgather(out, in)->wait();
  return at::cat(out[0], 0);
}

// y = cat over ranks of x (rank order); dL/dx = the local rows of Σ_ranks dL/dy.
struct AllGatherCat : public torch::autograd::Function<AllGatherCat> {
  static at::Tensor forward(torch::autograd::AutogradContext *ctx, at::Tensor x) {
    ctx->saved_data["n"] = x.size(0);
    return all_gather_cat(x);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext *ctx, torch::autograd::tensor_list g) {
    auto n = ctx->saved_data["n"].toInt();
    auto gy = g[0].clone().contiguous();
    all_reduce_sum_inplace(gy);
    return {gy.narrow(0, n * pg_for(gy).getRank(), n).clone()};
  }
};
}  // namespace
#endif

extern "C" {

int selfsup_dist_available() {
#ifdef SELFSUP_HAVE_GLOO
  return 1;
#else
  return 0;
#endif
}

int selfsup_dist_nccl_available() {
#if defined(SELFSUP_HAVE_GLOO) && defined(SELFSUP_HAVE_NCCL)
  return 1;
#else
  return 0;
#endif
}

#ifdef SELFSUP_HAVE_GLOO
// `nccl`: also build an NCCL process group for CUDA tensors (its communicator is made at the first
// collective, on that tensor's GPU).
int selfsup_dist_init(int rank, int world, const char *host, int port, int64_t timeout_ms, int nccl) {
  DIST_TRY
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(port);
  opts.isServer = rank == 0;
  opts.numWorkers = world;
  opts.waitWorkers = false;
  opts.timeout = std::chrono::milliseconds(timeout_ms);
  auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
  g_store = c10::make_intrusive<c10d::PrefixStore>("selfsup", tcp);
  auto gloo_store = c10::make_intrusive<c10d::PrefixStore>("gloo", g_store);
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
  // this host's address as the peers reach it: loopback for a single machine
  std::string local = std::string(host) == "127.0.0.1" || std::string(host) == "localhost" ? "127.0.0.1" : "";
  options->devices.push_back(local.empty() ? c10d::ProcessGroupGloo::createDefaultDevice() : c10d::ProcessGroupGloo::createDeviceForHostname(local));
  g_gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo_store, rank, world, options);
  if (nccl) {
#ifdef SELFSUP_HAVE_NCCL
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = std::chrono::milliseconds(timeout_ms);
    auto nccl_store = c10::make_intrusive<c10d::PrefixStore>("nccl", g_store);
    g_nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(nccl_store, rank, world, nccl_options);
#else
    throw std::runtime_error("NCCL was not compiled in (build.rs found no NCCL or CUDA headers)");
#endif
  }
  DIST_CATCH
}

// c10d's Reducer — the engine of PyTorch's DistributedDataParallel — over `params` (every one of
// which must receive a gradient in every backward): gradients are copied into buckets of about
// `bucket_bytes` as autograd produces them, and each bucket's all-reduce starts as soon as it is
// full, overlapping the rest of backward; the end of backward waits for them and writes the
// averages into `.grad`. As in DDP, the first-defined parameters — whose gradients come last —
// get a bucket of about 1 MB, so that little is left to send when backward ends.
int selfsup_dist_reducer_new(at::Tensor **params, int64_t n, int64_t bucket_bytes) {
  DIST_TRY
  if (!g_gloo) throw std::runtime_error("the process group is not initialised");
  if (!g_group) {
    g_group = c10::make_intrusive<c10d::ProcessGroup>(g_store, g_gloo->getRank(), g_gloo->getSize());
    g_group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, g_gloo);
    if (g_nccl) {
      g_group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, g_nccl);
      g_group->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
    } else {
      g_group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, g_gloo);
      g_group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    }
  }
  std::vector<at::Tensor> ps;
  for (int64_t i = 0; i < n; ++i) ps.push_back(*params[i]);
  const int64_t first_bytes = 1 << 20;
  std::vector<bool> sparse(ps.size(), false);
  auto assigned = c10d::compute_bucket_assignment_by_size(ps, {static_cast<size_t>(first_bytes), static_cast<size_t>(bucket_bytes)}, sparse);
  auto buckets = std::get<0>(assigned);
  // gradients arrive roughly in reverse order of definition (as DDP does)
  std::reverse(buckets.begin(), buckets.end());
  g_reducer.reset();
  g_reducer = std::make_unique<c10d::Reducer>(ps, buckets, g_group, sparse, bucket_bytes, /*find_unused_parameters=*/false,
                                              /*gradient_as_bucket_view=*/false, std::unordered_map<size_t, std::string>{}, first_bytes,
                                              /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false, std::vector<int64_t>{});
  DIST_CATCH
}

// Before each backward that must be reduced (every rank at the same step).
int selfsup_dist_reducer_prepare() {
  DIST_TRY
  if (!g_reducer) throw std::runtime_error("no gradient reducer");
  // after the first backward the buckets follow the order gradients arrived in (once; a collective)
  g_reducer->prepare_for_forward();
  g_reducer->rebuild_buckets();
  g_reducer->prepare_for_backward({});
  DIST_CATCH
}

int selfsup_dist_reducer_free() {
  DIST_TRY
  g_reducer.reset();
  DIST_CATCH
}

int selfsup_dist_destroy() {
  DIST_TRY
  g_reducer.reset();
  g_group.reset();
  // NCCL's watchdog threads end in shutdown(), not in the destructor
  if (g_nccl) g_nccl->shutdown();
  g_nccl.reset();
  g_gloo.reset();
  g_store.reset();
  DIST_CATCH
}

int selfsup_dist_all_reduce_sum_(at::Tensor *t) {
  DIST_TRY
  at::NoGradGuard guard;
  TORCH_CHECK(t->is_contiguous(), "all-reduce needs a contiguous tensor");
  all_reduce_sum_inplace(*t);
  DIST_CATCH
}

int selfsup_dist_all_gather_autograd(at::Tensor *x, at::Tensor **out) {
  DIST_TRY
  *out = new at::Tensor(AllGatherCat::apply(*x));
  DIST_CATCH
}

int selfsup_dist_all_gather(at::Tensor *x, at::Tensor **out) {
  DIST_TRY
  at::NoGradGuard guard;
  *out = new at::Tensor(all_gather_cat(x->detach()));
  DIST_CATCH
}

int selfsup_dist_broadcast_(at::Tensor *t, int root) {
  DIST_TRY
  at::NoGradGuard guard;
  std::vector<at::Tensor> v{*t};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  pg_for(*t).broadcast(v, o)->wait();
  DIST_CATCH
}

int selfsup_dist_barrier() {
  DIST_TRY
  // an all-reduce of one element: a barrier with the process group's timeout
  auto t = at::zeros({1});
  all_reduce_sum_inplace(t);
  DIST_CATCH
}
#else
#define MISSING { selfsup_set_error("distributed support was not compiled in: install gloo's headers (apt-get install libgloo-dev) and rebuild"); return 1; }
int selfsup_dist_init(int, int, const char *, int, int64_t, int) MISSING
int selfsup_dist_destroy() { return 0; }
int selfsup_dist_all_reduce_sum_(at::Tensor *) MISSING
int selfsup_dist_all_gather_autograd(at::Tensor *, at::Tensor **) MISSING
int selfsup_dist_all_gather(at::Tensor *, at::Tensor **) MISSING
int selfsup_dist_broadcast_(at::Tensor *, int) MISSING
int selfsup_dist_barrier() MISSING
int selfsup_dist_reducer_new(at::Tensor **, int64_t, int64_t) MISSING
int selfsup_dist_reducer_prepare() MISSING
int selfsup_dist_reducer_free() { return 0; }
#endif
}
