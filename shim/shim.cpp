// The small C++ shim for what tch 0.24 does not expose (see ../shared/notes/tch.md).
// Every entry point catches all C++ exceptions and reports them through `selfsup_last_error`:
// exceptions must never cross into Rust. Tensors cross as tch passes them: an `at::Tensor*`.
#include <torch/torch.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#ifdef SELFSUP_HAVE_CUDA_HEADERS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
// Declared here rather than through ATen/cuda/CUDAContextLight.h, which also needs the cuSPARSE,
// cuBLAS and cuSOLVER headers; defined in libtorch_cuda (what torch.cuda.get_device_properties
// reads).
namespace at::cuda {
cudaDeviceProp *getDeviceProperties(c10::DeviceIndex device);
}
#endif
#include <ATen/record_function.h>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>

static thread_local std::string last_error;

// Shared with dist.cpp.
void selfsup_set_error(const std::string &msg) { last_error = msg; }

#define SHIM_TRY try {
#define SHIM_CATCH                                   \
  return 0;                                          \
  }                                                  \
  catch (const c10::Error &e) {                      \
    last_error = e.what_without_backtrace();         \
    return 1;                                        \
  }                                                  \
  catch (const std::exception &e) {                  \
    last_error = e.what();                           \
    return 1;                                        \
  }                                                  \
  catch (...) {                                      \
    last_error = "unknown C++ exception";            \
    return 1;                                        \
  }

extern "C" {

const char *selfsup_last_error() { return last_error.c_str(); }

// bf16 autocast on CUDA. enter: enable + nest; exit: un-nest, clear cache at depth 0, restore.
int selfsup_autocast_enter(int *prev_enabled) {
  SHIM_TRY
  *prev_enabled = at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0;
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::increment_nesting();
  SHIM_CATCH
}

int selfsup_autocast_exit(int prev_enabled) {
  SHIM_TRY
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled != 0);
  SHIM_CATCH
}

int selfsup_autocast_is_enabled(int *out) {
  SHIM_TRY
  *out = at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0;
  SHIM_CATCH
}

// TF32 for float32 matmuls and convolutions (Ampere and newer).
int selfsup_set_tf32(int enabled) {
  SHIM_TRY
  at::globalContext().setAllowTF32CuBLAS(enabled != 0);
  at::globalContext().setAllowTF32CuDNN(enabled != 0);
  SHIM_CATCH
}

int selfsup_get_tf32(int *out) {
  SHIM_TRY
  *out = at::globalContext().allowTF32CuBLAS() ? 1 : 0;
  SHIM_CATCH
}

// Seeds every device's default generator (CPU and all CUDA devices).
int selfsup_manual_seed(uint64_t seed) {
  SHIM_TRY
  torch::manual_seed(seed);
  SHIM_CATCH
}

// The tensors behind `n` pointers as passed from Rust (handles sharing storage, not copies).
static std::vector<at::Tensor> tensor_list(at::Tensor **ts, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

// target <- target + w * (source - target) for all pairs, one multi-tensor launch per call.
int selfsup_foreach_lerp(at::Tensor **targets, at::Tensor **sources, int64_t n, double weight) {
  SHIM_TRY
  at::NoGradGuard guard;
  at::_foreach_lerp_(tensor_list(targets, n), tensor_list(sources, n), at::Scalar(weight));
  SHIM_CATCH
}

// One SGD-with-momentum (torch.optim.SGD, dampening 0) or LARS update of a group of parameters
// that share lr and weight decay, as multi-tensor (_foreach) operations: a handful of launches
// per group instead of several per tensor.
//   d = g + wd*theta
//   LARS (trust > 0): d *= q, q = trust*|theta|/|d| per tensor (1 if either norm is 0)
//   mu = momentum*mu + d;  theta -= lr*mu
// The gradients are never written to.
int selfsup_foreach_sgd(at::Tensor **params, at::Tensor **grads, at::Tensor **moms, int64_t n, double lr, double weight_decay, double momentum, double trust) {
  SHIM_TRY
  if (n > 0) {
    at::NoGradGuard guard;
    auto theta = tensor_list(params, n), g = tensor_list(grads, n), mu = tensor_list(moms, n);
    std::vector<at::Tensor> d = weight_decay > 0 ? at::_foreach_add(g, theta, at::Scalar(weight_decay)) : g;
    if (trust > 0) {
      auto pn = at::stack(at::_foreach_norm(theta));
      auto dn = at::stack(at::_foreach_norm(d));
      auto ok = pn.gt(0).logical_and(dn.gt(0));
      auto q = at::where(ok, pn * trust / dn, at::ones_like(pn)).unbind(0);
      // without weight decay d is still the gradients themselves: scale a copy
      if (weight_decay > 0)
        at::_foreach_mul_(d, q);
      else
        d = at::_foreach_mul(d, q);
    }
    at::_foreach_mul_(mu, at::Scalar(momentum));
    at::_foreach_add_(mu, d);
    at::_foreach_add_(theta, mu, at::Scalar(-lr));
  }
  SHIM_CATCH
}

// One AdamW update (Loshchilov & Hutter, arXiv:1711.05101; torch.optim.AdamW's foreach path) of a
// group sharing lr and weight decay, bias corrections bias1 = 1 - beta1^t, bias2 = 1 - beta2^t:
//   theta *= 1 - lr*wd;  m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
//   theta -= (lr/bias1) * m / (sqrt(v)/sqrt(bias2) + eps)
int selfsup_foreach_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avg, at::Tensor **exp_avg_sq, int64_t n, double lr, double weight_decay, double beta1, double beta2, double eps, double bias1, double bias2) {
  SHIM_TRY
  if (n > 0) {
    at::NoGradGuard guard;
    auto theta = tensor_list(params, n), g = tensor_list(grads, n), m = tensor_list(exp_avg, n), v = tensor_list(exp_avg_sq, n);
    if (weight_decay > 0) at::_foreach_mul_(theta, at::Scalar(1.0 - lr * weight_decay));
    at::_foreach_mul_(m, at::Scalar(beta1));
    at::_foreach_add_(m, g, at::Scalar(1.0 - beta1));
    at::_foreach_mul_(v, at::Scalar(beta2));
    at::_foreach_addcmul_(v, g, g, at::Scalar(1.0 - beta2));
    auto denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, at::Scalar(std::sqrt(bias2)));
    at::_foreach_add_(denom, at::Scalar(eps));
    at::_foreach_addcdiv_(theta, m, denom, at::Scalar(-lr / bias1));
  }
  SHIM_CATCH
}

// Whether every tensor holds only finite values, as a boolean scalar on the tensors' device (no
// host read): the float64 sum of their float64-accumulated L2 norms (_foreach_norm, one
// multi-tensor launch) is finite. Accumulating in float64 keeps huge but finite float32 values
// (|x| up to 3.4e38, squares up to 1.2e77) from overflowing into a false alarm.
int selfsup_foreach_all_finite(at::Tensor **ts, int64_t n, at::Tensor **out) {
  SHIM_TRY
  at::NoGradGuard guard;
  if (n == 0) {
    *out = new at::Tensor(at::ones({}, at::TensorOptions().dtype(at::kBool)));
  } else {
    auto norms = at::_foreach_norm(tensor_list(ts, n), at::Scalar(2.0), at::kDouble);
    *out = new at::Tensor(at::stack(norms).sum().isfinite());
  }
  SHIM_CATCH
}

// torch's CUDA sync debug mode (torch.cuda.set_sync_debug_mode): 0 off, 1 warn, 2 error on every
// operation that makes the host wait for the device (item(), pageable copies, synchronize, ...).
// Needs CUDA's runtime headers at build time (the torch wheel's nvidia package has them).
int selfsup_cuda_sync_debug(int mode) {
  SHIM_TRY
#ifdef SELFSUP_HAVE_CUDA_HEADERS
  c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(mode));
#else
  if (mode != 0) throw std::runtime_error("this build has no CUDA runtime headers, so torch's sync debug mode is unavailable");
#endif
  SHIM_CATCH
}

// Peak bytes allocated on a CUDA device since start (0 if CUDA is absent).
int selfsup_cuda_peak_bytes(int device, int64_t *out) {
  SHIM_TRY
  *out = 0;
  if (torch::cuda::is_available()) {
    auto *alloc = c10::getDeviceAllocator(at::kCUDA);
    auto stats = alloc->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    *out = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
  SHIM_CATCH
}

// Copies `text` into buf (len bytes), NUL-terminated, truncated if longer.
static void copy_out(const std::string &text, char *buf, int64_t len) {
  if (len <= 0) throw std::invalid_argument("empty output buffer");
  size_t n = std::min(text.size(), static_cast<size_t>(len - 1));
  std::memcpy(buf, text.data(), n);
  buf[n] = 0;
}

// The CPU kernels ATen dispatches to on this processor ("AVX512", "AVX2", "DEFAULT", ...; the
// ATEN_CPU_CAPABILITY environment variable can lower it), as torch.backends.cpu reports it,
// copied into buf.
int selfsup_cpu_capability(char *buf, int64_t len) {
  SHIM_TRY
  copy_out(at::get_cpu_capability(), buf, len);
  SHIM_CATCH
}

// CUDA device `device` in words, as torch.cuda.get_device_properties gives it: its name, compute
// capability and memory ("NVIDIA H200, sm_90, 139 GiB"), copied into buf. An error without CUDA.
int selfsup_cuda_device_name(int device, char *buf, int64_t len) {
  SHIM_TRY
#ifdef SELFSUP_HAVE_CUDA_HEADERS
  if (device < 0 || device >= static_cast<int>(c10::cuda::device_count()))
    throw std::invalid_argument("CUDA device " + std::to_string(device) + " not available (" + std::to_string(c10::cuda::device_count()) + " visible)");
  const cudaDeviceProp *p = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(device));
  copy_out(std::string(p->name) + ", sm_" + std::to_string(p->major) + std::to_string(p->minor) + ", " +
               std::to_string((p->totalGlobalMem + (1ull << 29)) >> 30) + " GiB",
           buf, len);
#else
  (void)device; (void)buf; (void)len;
  throw std::runtime_error("this build has no CUDA runtime headers, so it cannot name a CUDA device");
#endif
  SHIM_CATCH
}

// Copies on a side stream (the loader's): the producer thread enters its own stream of CUDA
// device `device` (one per thread, from torch's pool), queues its asynchronous copies there and
// records an event; the consumer makes its current stream wait for that event and marks the
// copied tensors as used by it, so the caching allocator does not hand their memory to the side
// stream again while the step still reads them (torch.Tensor.record_stream). Device-generic c10
// interfaces: no CUDA headers needed at build time.
static c10::Stream side_stream(int device) {
  static thread_local std::vector<c10::Stream> streams;
  for (auto &s : streams)
    if (s.device_index() == device) return s;
  auto *impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  streams.push_back(impl->getStreamFromGlobalPool(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device)), false));
  return streams.back();
}

int selfsup_side_stream_enter(int device, void **guard) {
  SHIM_TRY
  *guard = new c10::StreamGuard(side_stream(device));
  SHIM_CATCH
}

int selfsup_side_stream_exit(void *guard) {
  SHIM_TRY
  delete static_cast<c10::StreamGuard *>(guard);
  SHIM_CATCH
}

// An event recorded on the calling thread's current stream of `device`.
int selfsup_event_record(int device, void **event) {
  SHIM_TRY
  auto *impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  auto *ev = new c10::Event(c10::DeviceType::CUDA);
  ev->record(impl->getStream(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device))));
  *event = ev;
  SHIM_CATCH
}

// The calling thread's current stream of `device` waits (on the device, not the host) for the
// event; the tensors are recorded as used by that stream.
int selfsup_event_wait(void *event, int device, at::Tensor **ts, int64_t n) {
  SHIM_TRY
  auto *impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  auto current = impl->getStream(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device)));
  static_cast<c10::Event *>(event)->block(current);
  for (int64_t i = 0; i < n; ++i) ts[i]->record_stream(current);
  SHIM_CATCH
}

int selfsup_event_free(void *event) {
  SHIM_TRY
  delete static_cast<c10::Event *>(event);
  SHIM_CATCH
}

// CUDA graphs (torch.cuda.CUDAGraph): work queued between capture_begin and capture_end is
// recorded, not run, and replay launches all of it with one call. Capture needs a stream other
// than the default one, so a graph owns a stream from torch's pool: `enter` makes it current
// (after the work already queued on the previous stream), warm-up iterations and the capture run
// there, `exit` restores the previous stream and orders it after the side stream. Memory the
// captured work allocates comes from the graph's private pool and keeps its addresses on replay.
// Streams and events go through c10's device-generic interfaces (as the side stream's above): the
// CUDA-specific guards and events are inline code calling the CUDA runtime, which is not linked.
#ifdef SELFSUP_HAVE_CUDA_HEADERS
struct SelfsupGraph {
  at::cuda::CUDAGraph graph;
  c10::Stream stream;
  std::optional<c10::StreamGuard> guard;
  explicit SelfsupGraph(c10::Stream s) : stream(s) {}
};

// `waiter` waits (on the device) for the work queued so far on `after`.
static void order_after(c10::Stream after, c10::Stream waiter) {
  c10::Event ev(c10::DeviceType::CUDA);
  ev.record(after);
  ev.block(waiter);
}
#endif

static std::runtime_error no_cuda_graphs() {
  return std::runtime_error("this build has no CUDA runtime headers, so CUDA graphs are unavailable");
}

// The body, given the graph `sg`, in a build with CUDA's headers; otherwise the error above.
#ifdef SELFSUP_HAVE_CUDA_HEADERS
#define WITH_GRAPH(g, ...)                               \
  {                                                      \
    auto *sg = static_cast<SelfsupGraph *>(g);           \
    auto *impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA); \
    (void)impl;                                          \
    __VA_ARGS__;                                         \
  }
#else
#define WITH_GRAPH(g, ...) \
  {                        \
    (void)(g);             \
    throw no_cuda_graphs(); \
  }
#endif

int selfsup_graph_new(int device, void **out) {
  SHIM_TRY
#ifdef SELFSUP_HAVE_CUDA_HEADERS
  auto *impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  *out = new SelfsupGraph(impl->getStreamFromGlobalPool(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device)), false));
#else
  (void)device; (void)out;
  throw no_cuda_graphs();
#endif
  SHIM_CATCH
}

int selfsup_graph_enter(void *g) {
  SHIM_TRY
  WITH_GRAPH(g, order_after(impl->getStream(sg->stream.device()), sg->stream); sg->guard.emplace(sg->stream))
  SHIM_CATCH
}

int selfsup_graph_exit(void *g) {
  SHIM_TRY
  WITH_GRAPH(g, sg->guard.reset(); order_after(sg->stream, impl->getStream(sg->stream.device())))
  SHIM_CATCH
}

// Thread-local capture mode: only this thread's unsafe calls (a synchronisation, an event query)
// break the capture. In the default global mode, those of any thread would: the loader's producer
// keeps pinning (the pinned allocator queries events) and copying on its own stream meanwhile
// (torch.cuda.graph's capture_error_mode="thread_local"). Kernels the autograd engine's thread
// queues on the capturing stream are captured in either mode.
int selfsup_graph_capture_begin(void *g) {
  SHIM_TRY
  WITH_GRAPH(g, sg->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal))
  SHIM_CATCH
}

int selfsup_graph_capture_end(void *g) {
  SHIM_TRY
  WITH_GRAPH(g, sg->graph.capture_end())
  SHIM_CATCH
}

// Replays on the calling thread's current stream.
int selfsup_graph_replay(void *g) {
  SHIM_TRY
  WITH_GRAPH(g, sg->graph.replay())
  SHIM_CATCH
}

int selfsup_graph_free(void *g) {
  SHIM_TRY
#ifdef SELFSUP_HAVE_CUDA_HEADERS
  delete static_cast<SelfsupGraph *>(g);
#else
  (void)g;
#endif
  SHIM_CATCH
}

// ATen operators dispatched while a counter runs, on every thread (a global RecordFunction
// callback at function scope, as torch.profiler's): each costs the host a dispatch whether or
// not it launches a kernel, so their number is the host's share of a step.
static std::atomic<int64_t> dispatched_ops{0};

static std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction &fn) {
  if (std::strncmp(fn.name(), "aten::", 6) == 0) dispatched_ops.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

int selfsup_op_count_start(uint64_t *handle) {
  SHIM_TRY
  dispatched_ops = 0;
  *handle = at::addGlobalCallback(at::RecordFunctionCallback(count_op).scopes({at::RecordScope::FUNCTION}));
  SHIM_CATCH
}

int selfsup_op_count_stop(uint64_t handle, int64_t *out) {
  SHIM_TRY
  at::removeCallback(handle);
  *out = dispatched_ops.load();
  SHIM_CATCH
}

}  // extern "C"

extern "C" {
// Channels-last (NHWC) memory format. `in_place` re-lays a parameter's data under the same
// tensor (so optimisers and variable stores keep seeing it); otherwise returns a new tensor.
int selfsup_channels_last(at::Tensor *t, int in_place, at::Tensor **out) {
  SHIM_TRY
  *out = nullptr;
  if (t->dim() != 4) return 0;
  auto converted = t->contiguous(at::MemoryFormat::ChannelsLast);
  if (in_place) {
    t->set_data(converted);
  } else {
    *out = new at::Tensor(converted);
  }
  SHIM_CATCH
}

// Gradients set to none (torch's zero_grad(set_to_none=True)): nothing is launched, and the
// next backward hands its gradient over instead of adding it to zeros.
int selfsup_grads_to_none(at::Tensor **ts, int64_t n) {
  SHIM_TRY
  for (int64_t i = 0; i < n; ++i) ts[i]->mutable_grad().reset();
  SHIM_CATCH
}

// A page-locked copy for asynchronous copies to the accelerator. tch's `pin_memory(device)` passes
// the device argument that torch 2.11 deprecates, which prints two warnings per tensor pinned.
int selfsup_pin_memory(at::Tensor *t, at::Tensor **out) {
  SHIM_TRY
  *out = new at::Tensor(t->pin_memory());
  SHIM_CATCH
}

int selfsup_is_channels_last(at::Tensor *t, int *out) {
  SHIM_TRY
  *out = t->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
  SHIM_CATCH
}
}
