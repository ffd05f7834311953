// Host side of the sm90 block-FP8 GEMM: checks a problem, picks the tile shape, encodes the
// tensor maps (cuTensorMapEncodeTiled, reached through the runtime's driver entry point, so no
// link against libcuda) and launches the persistent grid. The kernel is fp8_gemm_sm90.cuh.
#include <cudaTypedefs.h>

#include <atomic>
#include <mutex>

#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.cuh"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"

namespace dsserve::cuda {

namespace {

using sm90::KernelArgs;
using sm90::KernelConfig;
using sm90::ScheduleKind;
using sm90::TileShape;

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

constexpr int kMaxDevices = 64;
std::atomic<int> last_grid{0};  // CTAs of the last launch (benchmarks print it)

int num_sms(int device) {
  static std::atomic<int> cache[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) return 132;
  int v = cache[device].load(std::memory_order_relaxed);
  if (v == 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || v <= 0) v = 132;
    cache[device].store(v, std::memory_order_relaxed);
  }
  return v;
}

// A tiled tensor map; dims and boxes innermost first, strides in bytes for dims 1..rank-1.
bool encode(CUtensorMap* map, CUtensorMapDataType type, int rank, const void* addr, const uint64_t* dims,
            const uint64_t* strides, const uint32_t* box, CUtensorMapSwizzle swizzle) {
  auto fn = encode_fn();
  if (fn == nullptr) return false;
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  return fn(map, type, cuuint32_t(rank), const_cast<void*>(addr), reinterpret_cast<const cuuint64_t*>(dims),
            reinterpret_cast<const cuuint64_t*>(strides), reinterpret_cast<const cuuint32_t*>(box), elem_strides,
            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

TileShape pick_shape(const Fp8GemmSm90Params& p) {
  if (p.force_bm != 0) return {p.force_bm, p.force_bn};
  if (p.group_end != nullptr) return sm90::kGroupedShape;
  int dev = 0;
  cudaGetDevice(&dev);
  return sm90::choose_dense_shape(p.M, p.N, p.batch, num_sms(dev));
}

// CTA pairs: share B between neighbouring m-blocks where their count is even (or the n-blocks'
// is odd too), else A between neighbouring n-blocks; expert groups share A (their m-blocks are few).
sm90::Pairing pairing_for(const Fp8GemmSm90Params& p, TileShape s) {
  if (p.group_end != nullptr) return sm90::Pairing::PairN;
  const int64_t mb = sm90::ceil_div64(p.M, s.bm), nb = sm90::ceil_div64(p.N, s.bn);
  if (mb >= 2 && (mb % 2 == 0 || nb % 2 == 1)) return sm90::Pairing::PairM;
  return sm90::Pairing::PairN;
}

// Whether the output can be staged and written by bulk tensor stores (BF16, no row map, rows and
// batches 16-byte aligned); the kernel otherwise stores column pairs from registers.
bool staged_store_ok(const Fp8GemmSm90Params& p) {
  const bool batch_ok = p.batch == 1 || p.group_end != nullptr ||
                        ((p.d_batch_stride * 2) % 16 == 0 && p.d_batch_stride >= p.ldd * p.M);
  return !p.d_f32 && p.d_row == nullptr && aligned(p.d, 16) && (p.ldd * 2) % 16 == 0 && batch_ok;
}

template <int BM, int BN, ScheduleKind kKind, int kCluster, bool kTmaStore, bool kPipelined = false>
cudaError_t launch_shape(const Fp8GemmSm90Params& p, cudaStream_t stream) {
  using C = KernelConfig<BM, BN, kTmaStore, kPipelined>;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  static std::atomic<uint64_t> attribute_set{0};  // one bit per device
  static std::atomic<int> max_clusters[kMaxDevices] = {};
  const uint64_t bit = uint64_t(1) << (dev % 64);
  auto kernel = sm90::fp8_gemm_sm90_kernel<BM, BN, kKind, kCluster, kTmaStore, kPipelined>;
  cudaLaunchConfig_t config{};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kCluster, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
  config.blockDim = dim3(C::kThreads);
  config.dynamicSmemBytes = C::kSmemBytes;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = kCluster > 1 ? 1 : 0;  // single CTAs: an ordinary launch
  if ((attribute_set.load(std::memory_order_relaxed) & bit) == 0) {
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSmemBytes));
    if (e != cudaSuccess) return e;
    if constexpr (kCluster > 1) {
      // How many pairs are resident at once (the GPCs decide), queried once per device.
      config.gridDim = dim3(unsigned(num_sms(dev) / kCluster * kCluster));
      int n = 0;
      e = cudaOccupancyMaxActiveClusters(&n, kernel, &config);
      if (e != cudaSuccess) return e;
      if (dev < kMaxDevices) max_clusters[dev].store(n > 0 ? n : 1, std::memory_order_relaxed);
    }
    attribute_set.fetch_or(bit, std::memory_order_relaxed);
  }
  const bool grouped = kKind == ScheduleKind::Grouped;
  const int64_t kblocks = p.K / sm90::kBlockK;
  const int a_batch = grouped ? 1 : p.batch;
  CUtensorMap map_a, map_b, map_sa, map_sb, map_d;
  {
    const uint64_t dims[3] = {uint64_t(p.K), uint64_t(p.M), uint64_t(a_batch)};
    const uint64_t strides[2] = {uint64_t(p.lda), uint64_t(p.a_batch_stride != 0 ? p.a_batch_stride : p.lda * p.M)};
    const uint32_t box[3] = {uint32_t(sm90::kBlockK), uint32_t(BM), 1};
    if (!encode(&map_a, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, p.a, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B))
      return cudaErrorInvalidValue;
  }
  {
    const uint64_t dims[3] = {uint64_t(p.K), uint64_t(p.N), uint64_t(p.batch)};
    const uint64_t strides[2] = {uint64_t(p.ldb), uint64_t(p.b_batch_stride != 0 ? p.b_batch_stride : p.ldb * p.N)};
    const uint32_t box[3] = {uint32_t(sm90::kBlockK), uint32_t(BN), 1};
    if (!encode(&map_b, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, p.b, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B))
      return cudaErrorInvalidValue;
  }
  {
    const uint64_t dims[2] = {uint64_t(p.a_scale_ld), uint64_t(a_batch * kblocks)};
    const uint64_t strides[1] = {uint64_t(p.a_scale_ld) * 4};
    const uint32_t box[2] = {uint32_t(BM), 1};
    if (!encode(&map_sa, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, p.a_scale, dims, strides, box,
                CU_TENSOR_MAP_SWIZZLE_NONE))
      return cudaErrorInvalidValue;
  }
  {
    const int64_t nblocks = sm90::ceil_div64(p.N, 128);
    const uint64_t dims[3] = {uint64_t(p.b_scale_ld), uint64_t(nblocks), uint64_t(p.batch)};
    const uint64_t strides[2] = {uint64_t(p.b_scale_ld) * 4,
                                 uint64_t(p.b_scale_batch_stride != 0 ? p.b_scale_batch_stride
                                                                      : p.b_scale_ld * nblocks) * 4};
    const uint32_t box[3] = {4, 2, 1};
    if (!encode(&map_sb, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, p.b_scale, dims, strides, box,
                CU_TENSOR_MAP_SWIZZLE_NONE))
      return cudaErrorInvalidValue;
  }
  map_d = map_a;  // unused unless staged
  if constexpr (kTmaStore) {
    const int64_t rows = p.M, batch = grouped ? 1 : p.batch;
    const uint64_t dims[3] = {uint64_t(p.N), uint64_t(rows), uint64_t(batch)};
    const uint64_t strides[2] = {uint64_t(p.ldd) * 2,
                                 uint64_t(p.d_batch_stride != 0 ? p.d_batch_stride : p.ldd * rows) * 2};
    const uint32_t box[3] = {64, uint32_t(C::kStoreRows), 1};
    if (!encode(&map_d, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, p.d, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B))
      return cudaErrorInvalidValue;
  }
  KernelArgs args{};
  args.d = p.d;
  args.ldd = p.ldd;
  args.d_batch_stride = p.d_batch_stride;
  args.M = p.M;
  args.N = p.N;
  args.kblocks = int(kblocks);
  args.batch = p.batch;
  args.d_f32 = p.d_f32 ? 1 : 0;
  args.group_end = p.group_end;
  args.d_row = p.d_row;
  const sm90::Pairing pairing = kCluster > 1 ? pairing_for(p, {BM, BN}) : sm90::Pairing::None;
  args.pairing = int(pairing);
  // Persistent grid: one CTA per SM (pairs: two per resident pair), at most one per tile (pair).
  int64_t slots = num_sms(dev) / kCluster;
  if constexpr (kCluster > 1)
    if (dev < kMaxDevices) slots = max_clusters[dev].load(std::memory_order_relaxed);
  int64_t units = slots;
  if (!grouped) {
    int64_t mu = sm90::ceil_div64(p.M, BM), nu = sm90::ceil_div64(p.N, BN);
    if (pairing == sm90::Pairing::PairM) mu = sm90::ceil_div64(mu, 2);
    if (pairing == sm90::Pairing::PairN) nu = sm90::ceil_div64(nu, 2);
    units = mu * nu * p.batch;
  }
  const int64_t grid = (units < slots ? units : slots) * kCluster;
  if (grid == 0) return cudaSuccess;
  config.gridDim = dim3(unsigned(grid));
  last_grid.store(int(grid), std::memory_order_relaxed);
  e = cudaLaunchKernelEx(&config, kernel, args, map_a, map_b, map_sa, map_sb, map_d);
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

template <ScheduleKind kKind>
cudaError_t launch_kind(const Fp8GemmSm90Params& p, TileShape s, bool pairs, bool staged, bool pipelined,
                        cudaStream_t stream) {
  // Pipelined consumers (two accumulator sets per warpgroup): 128 x 128 alone or in pairs (staged
  // stores where D allows), 128 x 112 alone.
  if (pipelined) {
    if (s.bm == 128 && s.bn == 128 && staged && staged_store_ok(p))
      return pairs ? launch_shape<128, 128, kKind, 2, true, true>(p, stream)
                   : launch_shape<128, 128, kKind, 1, true, true>(p, stream);
    if (s.bm == 128 && s.bn == 128)
      return pairs ? launch_shape<128, 128, kKind, 2, false, true>(p, stream)
                   : launch_shape<128, 128, kKind, 1, false, true>(p, stream);
    if constexpr (kKind == ScheduleKind::Batched)
      if (s.bm == 128 && s.bn == 112) return launch_shape<128, 112, kKind, 1, false, true>(p, stream);
    return cudaErrorInvalidConfiguration;
  }
#define DS_SM90_SHAPE(BM_, BN_)                                                                 \
  if (s.bm == BM_ && s.bn == BN_)                                                               \
    return pairs ? launch_shape<BM_, BN_, kKind, 2, false>(p, stream)                          \
                 : launch_shape<BM_, BN_, kKind, 1, false>(p, stream);
#define DS_SM90_SHAPE_ALONE(BM_, BN_) \
  if (s.bm == BM_ && s.bn == BN_) return launch_shape<BM_, BN_, kKind, 1, false>(p, stream);
  // 128 x 128 tiles stage their output for bulk stores where D allows it.
  if (s.bm == 128 && s.bn == 128 && staged && staged_store_ok(p))
    return pairs ? launch_shape<128, 128, kKind, 2, true>(p, stream) : launch_shape<128, 128, kKind, 1, true>(p, stream);
  if constexpr (kKind == ScheduleKind::Grouped) {
    DS_SM90_SHAPE(128, 128)
    // 256-row tiles hold a whole expert of up to 256 rows (B read once per tile); register stores
    // (a tile may reach into the next expert's segment, whose rows it must not write).
    DS_SM90_SHAPE_ALONE(256, 128)
  } else {
    DS_SM90_SHAPE(128, 128)
    DS_SM90_SHAPE(128, 136)
    DS_SM90_SHAPE_ALONE(256, 128)
    DS_SM90_SHAPE_ALONE(128, 112)
    DS_SM90_SHAPE_ALONE(128, 144)
    DS_SM90_SHAPE_ALONE(128, 160)
    DS_SM90_SHAPE_ALONE(64, 128)
  }
#undef DS_SM90_SHAPE_ALONE
#undef DS_SM90_SHAPE
  return cudaErrorInvalidConfiguration;
}

// CTA pairs where asked, or (by default) where the grid runs at least two waves of tiles.
bool use_pairs(const Fp8GemmSm90Params& p, TileShape s) {
  const bool built = sm90::pairs_instantiated(s);
  if (p.pairs >= 0) return p.pairs == 1 && built;
  return false;
}

// Pipelined consumers where asked (and built for the shape); the launcher's choice: classic.
bool use_pipelined(const Fp8GemmSm90Params& p, TileShape s) {
  if (p.pipelined >= 0) return p.pipelined == 1;
  (void)s;
  return false;
}

bool fail(std::string* why, const char* msg) {
  if (why) *why = msg;
  return false;
}

}  // namespace

int fp8_gemm_sm90_last_grid() { return last_grid.load(std::memory_order_relaxed); }

bool fp8_gemm_sm90_device_ok() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0 && encode_fn() != nullptr;
}

bool fp8_gemm_sm90_supported(const Fp8GemmSm90Params& p, std::string* why) {
  if (!fp8_gemm_sm90_device_ok()) return fail(why, "needs an sm_90 device and cuTensorMapEncodeTiled");
  if (p.K <= 0 || p.K % sm90::kBlockK != 0) return fail(why, "K must be a positive multiple of 128");
  if (p.K / sm90::kBlockK > sm90::kMaxKBlocks) return fail(why, "K above 32768");
  if (p.M < 0 || p.N <= 0 || p.M >= (int64_t(1) << 31) || p.N >= (int64_t(1) << 31) || p.batch < 1)
    return fail(why, "M, N or batch out of range");
  if (p.N % 2 != 0 || p.ldd % 2 != 0 || p.d_batch_stride % 2 != 0)
    return fail(why, "N, ldd and the D batch stride must be even (outputs are stored in column pairs)");
  if (!aligned(p.d, p.d_f32 ? 8 : 4)) return fail(why, "D is not aligned to a column pair");
  if (!aligned(p.a, 16) || !aligned(p.b, 16) || !aligned(p.a_scale, 16))
    return fail(why, "A, B and the A scales must be 16-byte aligned");
  if (p.lda % 16 != 0 || p.ldb % 16 != 0 || p.a_batch_stride % 16 != 0 || p.b_batch_stride % 16 != 0)
    return fail(why, "A and B row and batch strides must be multiples of 16 bytes");
  if (p.a_scale_ld % 4 != 0 || p.a_scale_ld < p.M) return fail(why, "A scale rows must hold M values, a multiple of 4");
  if (p.b_scale_ld < p.K / sm90::kBlockK) return fail(why, "B scale rows are shorter than K / 128");
  if (!aligned(p.b_scale, 16) || p.b_scale_ld % 4 != 0 || p.b_scale_batch_stride % 4 != 0)
    return fail(why, "B scales must be 16-byte aligned with rows and batches of a multiple of 4 floats");
  if (p.group_end != nullptr && p.batch > 1024) return fail(why, "more than 1024 expert groups");
  if (p.force_bm != 0) {
    bool known = false;
    for (const TileShape& s : sm90::kDenseShapes) known = known || (s.bm == p.force_bm && s.bn == p.force_bn);
    if (p.group_end != nullptr)
      known = p.force_bn == 128 && (p.force_bm == 128 || p.force_bm == 256);
    if (!known) return fail(why, "forced tile shape is not instantiated");
  }
  if (p.pipelined == 1) {
    const TileShape s = pick_shape(p);
    if (!sm90::pipelined_instantiated(s, p.group_end != nullptr))
      return fail(why, "pipelined consumers are built for 128x128 and (dense) 128x112 tiles only");
  }
  return true;
}

std::string fp8_gemm_sm90_tile(const Fp8GemmSm90Params& p) {
  const TileShape s = pick_shape(p);
  std::string t = std::to_string(s.bm) + "x" + std::to_string(s.bn);
  if (use_pipelined(p, s)) t += " pipelined";
  if (use_pairs(p, s)) t += pairing_for(p, s) == sm90::Pairing::PairM ? " pairs sharing B" : " pairs sharing A";
  if (s.bm == 128 && s.bn == 128 && p.staged_store != 0 && staged_store_ok(p)) t += " staged stores";
  return t;
}

cudaError_t launch_fp8_gemm_sm90(const Fp8GemmSm90Params& p, cudaStream_t stream) {
  if (p.M == 0 || p.N == 0) return cudaSuccess;
  if (!fp8_gemm_sm90_supported(p)) return cudaErrorInvalidValue;
  const TileShape s = pick_shape(p);
  const bool pairs = use_pairs(p, s), staged = p.staged_store != 0, pipelined = use_pipelined(p, s);
  return p.group_end != nullptr ? launch_kind<ScheduleKind::Grouped>(p, s, pairs, staged, pipelined, stream)
                                : launch_kind<ScheduleKind::Batched>(p, s, pairs, staged, pipelined, stream);
}

}  // namespace dsserve::cuda
