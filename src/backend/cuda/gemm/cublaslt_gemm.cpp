// cuBLASLt products (see cublaslt_gemm.h). Descriptors are created per call (cheap); the
// heuristic's algorithm is cached.
#include "backend/cuda/gemm/cublaslt_gemm.h"

#include <string>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

void lt_check(cublasStatus_t s, const char* what, const GemmArgs& a) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLASLt {} failed (status {}) for {} product m={} n={} k={} ldw={} ldx={} ldd={} batch={}", what, int(s),
       a.kind == GemmKind::Bf16  ? "bf16"
       : a.kind == GemmKind::F32 ? "f32"
       : a.kind == GemmKind::Int8 ? "int8"
                                  : "fp8 block-scaled",
       a.m, a.n, a.k,
       a.ldw, a.ldx, a.ldd, a.batch);
}

int alignment(const void* p) {
  auto v = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && v % (2 * a) == 0) a *= 2;
  return a;
}

cudaDataType_t in_type(GemmKind k) {
  switch (k) {
    case GemmKind::Bf16: return CUDA_R_16BF;
    case GemmKind::F32: return CUDA_R_32F;
    case GemmKind::Fp8BlockScaled: return CUDA_R_8F_E4M3;
    case GemmKind::Int8: return CUDA_R_8I;
  }
  return CUDA_R_16BF;
}

// Descriptors of one problem, destroyed with it.
struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t w = nullptr, x = nullptr, c = nullptr, d = nullptr;
  ~Descs() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (w) cublasLtMatrixLayoutDestroy(w);
    if (x) cublasLtMatrixLayoutDestroy(x);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};

void make_descs(const GemmArgs& a, Descs& ds) {
  const cudaDataType_t it = in_type(a.kind);
  const bool int8 = a.kind == GemmKind::Int8;
  lt_check(cublasLtMatmulDescCreate(&ds.op, int8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F, int8 ? CUDA_R_32I : CUDA_R_32F),
           "MatmulDescCreate", a);
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  lt_check(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "set TRANSA", a);
  lt_check(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "set TRANSB", a);
  if (a.kind == GemmKind::Fp8BlockScaled) {
    int32_t wmode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, xmode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    lt_check(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &wmode, sizeof(wmode)),
             "set A_SCALE_MODE", a);
    lt_check(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &xmode, sizeof(xmode)),
             "set B_SCALE_MODE", a);
    lt_check(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a.w_scale,
                                            sizeof(a.w_scale)),
             "set A_SCALE_POINTER", a);
    lt_check(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &a.x_scale,
                                            sizeof(a.x_scale)),
             "set B_SCALE_POINTER", a);
  }
  // Column-major views: W^T is [k, m] with ld ldw, X^T is [k, n] with ld ldx, D^T is [m, n].
  lt_check(cublasLtMatrixLayoutCreate(&ds.w, it, uint64_t(a.k), uint64_t(a.m), a.ldw), "layout W", a);
  lt_check(cublasLtMatrixLayoutCreate(&ds.x, it, uint64_t(a.k), uint64_t(a.n), a.ldx), "layout X", a);
  lt_check(cublasLtMatrixLayoutCreate(&ds.c, a.d_type, uint64_t(a.m), uint64_t(a.n), a.ldd), "layout C", a);
  lt_check(cublasLtMatrixLayoutCreate(&ds.d, a.d_type, uint64_t(a.m), uint64_t(a.n), a.ldd), "layout D", a);
  if (a.batch > 1) {
    int32_t b = a.batch;
    auto set_batch = [&](cublasLtMatrixLayout_t l, int64_t stride) {
      lt_check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof(b)), "batch", a);
      lt_check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                sizeof(stride)),
               "batch stride", a);
    };
    set_batch(ds.w, a.stride_w);
    set_batch(ds.x, a.stride_x);
    set_batch(ds.c, a.stride_d);
    set_batch(ds.d, a.stride_d);
  }
}

}  // namespace

LtGemm::LtGemm(cudaStream_t stream) : stream_(stream) {
  cublasStatus_t s = cublasLtCreate(&handle_);
  DS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cublasLtCreate failed (status {})", int(s));
  cuda_check(cudaMalloc(&workspace_, workspace_bytes_), "cudaMalloc of the cuBLASLt workspace");
}

LtGemm::~LtGemm() {
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

bool LtGemm::find_algo(const GemmArgs& a, cublasLtMatmulAlgo_t* algo) {
  Key key{int(a.kind), a.m, a.n, a.k, a.ldw, a.ldx, a.ldd, int(a.d_type), a.batch, a.stride_w, a.stride_x,
          a.stride_d, alignment(a.w), alignment(a.x), alignment(a.d)};
  auto it = algos_.find(key);
  if (it != algos_.end()) {
    *algo = it->second.second;
    return it->second.first;
  }
  Descs ds;
  make_descs(a, ds);
  cublasLtMatmulPreference_t pref = nullptr;
  lt_check(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate", a);
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, uint32_t v) {
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v));
  };
  uint64_t ws = workspace_bytes_;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t(alignment(a.w)));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, uint32_t(alignment(a.x)));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, uint32_t(alignment(a.d)));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32_t(alignment(a.d)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(handle_, ds.op, ds.w, ds.x, ds.c, ds.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  bool ok = s == CUBLAS_STATUS_SUCCESS && found > 0;
  if (ok) *algo = result.algo;
  algos_[key] = {ok, ok ? result.algo : cublasLtMatmulAlgo_t{}};
  return ok;
}

bool LtGemm::supported(const GemmArgs& a) {
  cublasLtMatmulAlgo_t algo;
  return find_algo(a, &algo);
}

void LtGemm::run(const GemmArgs& a) {
  if (a.m == 0 || a.n == 0) return;
  cublasLtMatmulAlgo_t algo;
  if (!find_algo(a, &algo)) lt_check(CUBLAS_STATUS_NOT_SUPPORTED, "heuristic (no algorithm)", a);
  Descs ds;
  make_descs(a, ds);
  const float alpha = 1.0f, beta = 0.0f;
  const int32_t alpha_i = 1, beta_i = 0;  // Int8: the scale type is int32
  const bool int8 = a.kind == GemmKind::Int8;
  lt_check(cublasLtMatmul(handle_, ds.op, int8 ? static_cast<const void*>(&alpha_i) : &alpha, a.w, ds.w, a.x, ds.x,
                          int8 ? static_cast<const void*>(&beta_i) : &beta, a.d, ds.c, a.d, ds.d, &algo, workspace_,
                          workspace_bytes_, stream_),
           "Matmul", a);
}

}  // namespace dsserve::cuda
