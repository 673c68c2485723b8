//! Build script: compiles the C++ shim (what tch lacks) against the same libtorch that torch-sys
//! found, and makes the binary find and keep libtorch's libraries at run time.
//!
//! * `-Wl,-rpath,<torch/lib>` so the binary runs with no `LD_LIBRARY_PATH`.
//! * `-Wl,--no-as-needed -ltorch_cuda -lc10_cuda` when the CUDA libraries exist: nothing in Rust
//!   references a CUDA symbol directly, so with rustc's default `--as-needed` the CUDA backend would
//!   silently disappear and `--device cuda` would report no GPU (see ../shared/notes/tch.md).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.cpp");
    println!("cargo:rerun-if-changed=shim/dist.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    let lib_dir = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report DEP_TCH_LIBTORCH_LIB (is LIBTORCH_USE_PYTORCH=1 set?)"),
    );
    let torch_root = lib_dir.parent().expect("libtorch lib dir has a parent").to_path_buf();
    let include = torch_root.join("include");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/shim.cpp")
        .file("shim/dist.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .opt_level(2);
    // c10d's Gloo process group needs gloo's headers, which the torch wheel lacks: Debian's
    // libgloo-dev provides them (only headers are used; the gloo code is libtorch_cpu's own).
    // Without them the distributed entry points report what to install.
    let gloo = std::env::var("SELFSUP_GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    println!("cargo:rerun-if-env-changed=SELFSUP_GLOO_INCLUDE");
    let gloo_found = gloo.join("gloo/config.h").exists();
    if gloo_found {
        build.define("SELFSUP_HAVE_GLOO", None).define("USE_C10D_GLOO", None).define("USE_DISTRIBUTED", None);
        if gloo != PathBuf::from("/usr/include") {
            build.include(&gloo);
        }
        println!("cargo:rustc-cfg=selfsup_has_gloo");
    } else {
        println!("cargo:warning=gloo headers not found (apt-get install libgloo-dev): building without distributed training");
    }
    println!("cargo:rustc-check-cfg=cfg(selfsup_has_gloo)");
    // CUDA's runtime headers, complete with crt/ (for c10/cuda: the sync debug mode and NCCL):
    // SELFSUP_CUDA_INCLUDE, a CUDA toolkit, the venv's nvidia/cu13 (crt/ comes from the
    // nvidia-cuda-crt wheel `make setup` installs), or the copy that torch's triton dependency
    // ships. Without them the sync debug mode reports so.
    println!("cargo:rerun-if-env-changed=SELFSUP_CUDA_INCLUDE");
    let site = torch_root.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let cuda_include = std::env::var("SELFSUP_CUDA_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/local/cuda/include"), site.join("nvidia/cu13/include"), site.join("triton/backends/nvidia/include"), site.join("nvidia/cuda_runtime/include")])
        .find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists());
    if let Some(dir) = &cuda_include {
        build.include(dir).define("SELFSUP_HAVE_CUDA_HEADERS", None);
    }
    // NCCL's process group (c10d's ProcessGroupNCCL, in libtorch_cuda) for CUDA tensors: needs
    // NCCL's header (the nvidia-nccl wheel torch depends on) and complete CUDA headers: cuBLAS (the
    // wheel's nvidia/cu13) plus crt/ and CCCL's nv/target, which `make setup` adds to the venv from
    // the nvidia-cuda-crt and nvidia-cuda-cccl wheels. Without them data-parallel GPU runs use Gloo.
    let nccl_include = site.join("nvidia/nccl/include");
    let cccl = cuda_include.as_ref().and_then(|d| [d.clone(), d.join("cccl")].into_iter().find(|c| c.join("nv/target").exists()));
    let have_cublas = cuda_include.as_ref().map(|d| d.join("cublas_v2.h").exists()).unwrap_or(false);
    if let (true, Some(cccl), true, true) = (gloo_found, cccl, have_cublas, nccl_include.join("nccl.h").exists() && lib_dir.join("libtorch_cuda.so").exists()) {
        build.include(cccl).include(&nccl_include).define("SELFSUP_HAVE_NCCL", None).define("USE_C10D_NCCL", None);
    } else if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:warning=NCCL or complete CUDA headers not found (make setup installs them): data-parallel GPU runs will use Gloo");
    }
    build.compile("selfsup_shim");

    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib_dir.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
        println!("cargo:rustc-link-arg=-ltorch_cpu");
        println!("cargo:rustc-link-arg=-lc10");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-cfg=selfsup_has_cuda_libs");
    }
    println!("cargo:rustc-check-cfg=cfg(selfsup_has_cuda_libs)");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
