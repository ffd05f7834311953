# A host model of mla_decode_mma.cu's index math, for changing the kernel without a GPU at hand:
# the same tile constants, swizzled copies, ldmatrix addresses, P exchange, online softmax and
# outputs, executed warp by warp on numpy with ldmatrix (.trans) and mma.m16n8k16 fragments as the
# PTX ISA defines them, then merged across splits and compared with float64 attention. Shared memory
# is modelled byte by byte, so the FP8 cache read in registers (ldmatrix on byte pairs, Q's columns
# de-interleaved, even / odd bytes as the B fragments, the output column order) is modelled too; the
# widening itself is the identity here (GpuFp8Cache.* checks it value by value). It checks indices
# and bank conflicts of ldmatrix, not speed or races; the GPU tests (GpuOps.MlaDecode*,
# GpuFp8Cache.*) are the real check.
# Run: python3 src/backend/cuda/mla_decode/fragment_model.py [--v3]   (needs numpy)
import sys

import numpy as np

def bf16(x):
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)

class Cfg:
    def __init__(s, latent, kvrank, wide, fp8=False):
        s.kLatent, s.kKvRank = latent, kvrank
        s.kFp8 = fp8  # an FP8 cache read in registers
        s.kWarps, s.kThreads = 8, 256
        s.kBlockKeys = 64
        s.kMTiles = 2 if wide else 1
        s.kGroupWarps = 4 if wide else 8
        s.kGroups = s.kWarps // s.kGroupWarps
        s.kGroupRows = 16 * s.kMTiles
        s.kRows = s.kGroups * s.kGroupRows
        s.kKeyTiles = s.kBlockKeys // 8 // s.kGroupWarps
        s.kColTiles = kvrank // 8 // s.kGroupWarps
        s.kQInRegs = not wide
        s.kStages = (4 if fp8 else 2) if wide else (6 if fp8 else 3)
        s.kChunks = latent // 8
        s.kRowChunks = (s.kChunks + 7) // 8 * 8
        s.kRowBytes = s.kRowChunks * 16
        s.kKSteps = latent // 16
        s.kSChains = 1 if s.kMTiles * s.kKeyTiles >= 4 else 4 // (s.kMTiles * s.kKeyTiles)
        s.kQBytes = 0 if s.kQInRegs else s.kRows * s.kRowBytes
        s.kTileBytes = s.kBlockKeys * s.kRowBytes
        s.kFp8Chunks = latent // 16
        s.kFp8RowChunks = (s.kFp8Chunks + 3) // 4 * 4
        s.kStageRowBytes = s.kFp8RowChunks * 16 if fp8 else s.kRowBytes
        s.kStageBytes = s.kBlockKeys * s.kStageRowBytes
        s.kTilesOffset = s.kQBytes
        s.kPOffset = s.kTilesOffset + s.kStages * s.kStageBytes
        s.kPBytes = s.kWarps * s.kMTiles * s.kKeyTiles * 32 * 8
        s.kStatOffset = s.kPOffset + s.kPBytes
        s.kSmemBytes = s.kStatOffset + s.kWarps * s.kGroupRows * 4
        assert s.kSmemBytes <= 227 * 1024
        assert not s.kQInRegs or s.kRows * s.kRowBytes <= s.kStageBytes
        assert not fp8 or s.kFp8RowChunks % 8 == 4

def fp8_swz(C, row, chunk):
    return row * C.kStageRowBytes + ((chunk ^ ((row >> 1) & 3)) << 4)

def swz(C, row, chunk):
    return row * C.kRowBytes + ((chunk ^ (row & 7)) << 4)

L = np.arange(32)
G, T4 = L >> 2, L & 3

class Smem:
    # One value per byte (NaN = never written): a BF16 value fills both of its bytes, an FP8 value one.
    def __init__(s, nbytes):
        s.b = np.full(nbytes, np.nan, dtype=np.float32)
    def write16(s, addr, vals8):  # 8 BF16 values
        assert addr % 16 == 0
        s.b[addr: addr + 16] = np.repeat(np.asarray(vals8, dtype=np.float32), 2)
    def write16_fp8(s, addr, vals16):  # 16 FP8 values
        assert addr % 16 == 0
        s.b[addr: addr + 16] = vals16
    def read16(s, addr):  # 8 BF16 values
        return s.b[addr: addr + 16: 2].copy()
    def ldsm_bytes(s, addrs, n, trans=False):
        # ldmatrix .x{n} of 8x8 b16 tiles; lane l's register i as its 4 bytes (byte 0 lowest)
        addrs = np.asarray(addrs)[: 8 * n]
        assert np.all(addrs % 16 == 0)
        for i in range(n):  # one phase per matrix: its 8 rows must hit 8 different 16-byte bank groups
            assert len(set((addrs[8 * i: 8 * i + 8] // 16) % 8)) == 8, "ldmatrix bank conflict"
        regs = np.zeros((n, 32, 4), dtype=np.float32)
        for i in range(n):
            M = np.stack([s.b[addrs[8 * i + r]: addrs[8 * i + r] + 16] for r in range(8)])  # 8 rows x 16 bytes
            for l in range(32):
                g, t = l >> 2, l & 3
                if not trans:
                    regs[i, l] = M[g, 4 * t: 4 * t + 4]
                else:
                    regs[i, l] = np.concatenate([M[2 * t, 2 * g: 2 * g + 2], M[2 * t + 1, 2 * g: 2 * g + 2]])
        return regs
    def ldsm_x4(s, addrs, trans=False):  # BF16 view: each register's two values
        return s.ldsm_bytes(addrs, 4, trans)[:, :, 0::2]

def even(regs):  # fp8x4_even_to_bf16x2: bytes 0 and 2
    return regs[..., 0::2]

def odd(regs):  # fp8x4_odd_to_bf16x2: bytes 1 and 3
    return regs[..., 1::2]

def mma(d, a, b0, b1):
    # d [32,4] f32; a [4,32,2]; b0,b1 [32,2]
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); Cm = np.zeros((16, 8))
    for l in range(32):
        g, t = l >> 2, l & 3
        A[g, 2*t:2*t+2] = a[0][l]; A[g+8, 2*t:2*t+2] = a[1][l]
        A[g, 2*t+8:2*t+10] = a[2][l]; A[g+8, 2*t+8:2*t+10] = a[3][l]
        B[2*t:2*t+2, g] = b0[l]; B[2*t+8:2*t+10, g] = b1[l]
        Cm[g, 2*t:2*t+2] = d[l, 0:2]; Cm[g+8, 2*t:2*t+2] = d[l, 2:4]
    assert not np.isnan(A).any() and not np.isnan(B).any()
    D = A @ B + Cm
    for l in range(32):
        g, t = l >> 2, l & 3
        d[l] = (D[g, 2*t], D[g, 2*t+1], D[g+8, 2*t], D[g+8, 2*t+1])

def run_block(C, q, cache_rows, heads, h0, ks, ke, scale, mask_fn):
    """q: [heads, latent] (bf16 values); cache_rows(key)->[latent] or None; returns (out rows dict)."""
    sm = Smem(C.kSmemBytes)
    tiles = C.kTilesOffset
    rows = min(C.kRows, heads - h0)
    ntiles = (ke - ks + 63) // 64 if ke > ks else 0
    assert ntiles > 0
    q_s = tiles + (C.kStages - 1) * C.kStageBytes if C.kQInRegs else 0
    for idx in range(C.kRows * C.kChunks):
        r, c = idx // C.kChunks, idx % C.kChunks
        v = q[h0 + r, 8*c:8*c+8] if r < rows else np.zeros(8)
        sm.write16(q_s + swz(C, r, c), v)
    if C.kFp8:  # each k-step's columns: the 8 even ones, then the 8 odd ones
        for r in range(C.kRows):
            for k in range(C.kKSteps):
                x = np.concatenate([sm.read16(q_s + swz(C, r, 2 * k)), sm.read16(q_s + swz(C, r, 2 * k + 1))])
                sm.write16(q_s + swz(C, r, 2 * k), x[0::2])
                sm.write16(q_s + swz(C, r, 2 * k + 1), x[1::2])
    def issue(it):
        if it >= ntiles: return
        for tid in range(256):
            lrow, quarter = tid >> 2, tid & 3
            key = ks + it * 64 + lrow
            ok = key < ke
            stage = tiles + (it % C.kStages) * C.kStageBytes
            copies = C.kFp8Chunks if C.kFp8 else C.kChunks
            for j in range((copies + 3) // 4):
                c = quarter + 4 * j
                if c >= copies: continue
                if C.kFp8:
                    v = cache_rows(key)[16*c:16*c+16] if ok else np.zeros(16)
                    sm.write16_fp8(stage + fp8_swz(C, lrow, c), v)
                else:
                    v = cache_rows(key)[8*c:8*c+8] if ok else np.zeros(8)
                    sm.write16(stage + swz(C, lrow, c), v)
    for s in range(C.kStages - 1): issue(s)
    qf = None
    if C.kQInRegs:
        qf = [sm.ldsm_x4([q_s + swz(C, l & 15, 2*k + (l >> 4)) for l in range(32)]) for k in range(C.kKSteps)]
    xr = L & 7
    o = np.zeros((8, C.kMTiles, C.kColTiles, 32, 4), dtype=np.float64)
    m_run = np.full((8, C.kMTiles, 2, 32), -np.inf); l_run = np.zeros((8, C.kMTiles, 2, 32))
    sP = {}   # (warp, mt, nt) -> [32,2,2]
    qscale = np.float32(scale * 1.4426950408889634)
    for it in range(ntiles):
        issue(it + C.kStages - 1)
        kbuf = tiles + (it % C.kStages) * C.kStageBytes
        kt = ks + it * 64
        S = {}
        for warp in range(8):
            group, wig = warp // C.kGroupWarps, warp % C.kGroupWarps
            k_lane = (wig * C.kKeyTiles * 8 + xr) * C.kRowBytes
            k_chunk = L >> 3
            q_lane = (group * C.kGroupRows + (L & 15)) * C.kRowBytes
            q_chunk = L >> 4
            acc = np.zeros((C.kSChains, C.kMTiles, C.kKeyTiles, 32, 4))
            f8x = (L >> 1) & 3
            k8_lane = (wig * C.kKeyTiles * 8 + ((L >> 4) % C.kKeyTiles) * 8 + xr) * C.kStageRowBytes
            k8_step = (L >> 3) & 1
            for kp in range(C.kKSteps // 2):
                if C.kFp8:
                    raw = sm.ldsm_bytes(kbuf + k8_lane + (((2*kp + k8_step) ^ f8x) << 4), 2 * C.kKeyTiles)
                    b = [[x for h in range(2) for x in (even(raw[2*nt + h]), odd(raw[2*nt + h]))] for nt in range(C.kKeyTiles)]
                else:
                    b = [sm.ldsm_x4(kbuf + k_lane + nt * 8 * C.kRowBytes + (((4*kp + k_chunk) ^ xr) << 4)) for nt in range(C.kKeyTiles)]
                for h in range(2):
                    k = 2 * kp + h
                    a = []
                    for mt in range(C.kMTiles):
                        if C.kQInRegs: a.append(qf[k])
                        else: a.append(sm.ldsm_x4(q_s + q_lane + mt * 16 * C.kRowBytes + (((2*k + q_chunk) ^ xr) << 4)))
                    for mt in range(C.kMTiles):
                        for nt in range(C.kKeyTiles):
                            mma(acc[kp % C.kSChains, mt, nt], a[mt], b[nt][2*h], b[nt][2*h+1])
            S[warp] = acc.sum(0)
        # mask + max
        stat = {}
        for warp in range(8):
            group, wig = warp // C.kGroupWarps, warp % C.kGroupWarps
            s = S[warp]
            key_ok = np.zeros((C.kKeyTiles, 2, 32), bool)
            for nt in range(C.kKeyTiles):
                for e in range(2):
                    key = kt + (wig * C.kKeyTiles + nt) * 8 + 2 * T4 + e
                    key_ok[nt, e] = [(kk < ke) and mask_fn(kk) for kk in key]
            for mt in range(C.kMTiles):
                for nt in range(C.kKeyTiles):
                    for e in range(4):
                        v = np.where(key_ok[nt, e & 1], (s[mt, nt, :, e].astype(np.float32) * qscale), -np.inf)
                        s[mt, nt, :, e] = v
                for h in range(2):
                    mx = np.maximum(s[mt, :, :, 2*h].max(0), s[mt, :, :, 2*h+1].max(0))  # per lane
                    mx = mx.reshape(8, 4).max(1)  # quad
                    for gg in range(8): stat[(group, wig, mt*16 + gg + 8*h)] = mx[gg]
        for warp in range(8):
            group, wig = warp // C.kGroupWarps, warp % C.kGroupWarps
            s = S[warp]
            alpha = np.zeros((C.kMTiles, 2, 32)); m_use = np.zeros((C.kMTiles, 2, 32))
            for mt in range(C.kMTiles):
                for h in range(2):
                    m = m_run[warp, mt, h].copy()
                    for w in range(C.kGroupWarps):
                        m = np.maximum(m, np.array([stat[(group, w, mt*16 + g + 8*h)] for g in G]))
                    mu = np.where(m == -np.inf, 0.0, m)
                    with np.errstate(invalid='ignore'):
                        alpha[mt, h] = np.exp2(m_run[warp, mt, h] - mu)
                    m_use[mt, h] = mu; m_run[warp, mt, h] = m
            for mt in range(C.kMTiles):
                rs0 = np.zeros(32); rs1 = np.zeros(32)
                for nt in range(C.kKeyTiles):
                    p0 = np.exp2(s[mt, nt, :, 0] - m_use[mt, 0]); p1 = np.exp2(s[mt, nt, :, 1] - m_use[mt, 0])
                    p2 = np.exp2(s[mt, nt, :, 2] - m_use[mt, 1]); p3 = np.exp2(s[mt, nt, :, 3] - m_use[mt, 1])
                    rs0 += p0 + p1; rs1 += p2 + p3
                    sP[(warp, mt, nt)] = np.stack([np.stack([bf16(p0), bf16(p1)], 1), np.stack([bf16(p2), bf16(p3)], 1)])  # [2 regs][32][2]
                l_run[warp, mt, 0] = l_run[warp, mt, 0] * alpha[mt, 0] + rs0
                l_run[warp, mt, 1] = l_run[warp, mt, 1] * alpha[mt, 1] + rs1
            for mt in range(C.kMTiles):
                for j in range(C.kColTiles):
                    o[warp, mt, j, :, 0] *= alpha[mt, 0]; o[warp, mt, j, :, 1] *= alpha[mt, 0]
                    o[warp, mt, j, :, 2] *= alpha[mt, 1]; o[warp, mt, j, :, 3] *= alpha[mt, 1]
        for warp in range(8):
            group, wig = warp // C.kGroupWarps, warp % C.kGroupWarps
            v_lane = (xr + ((L >> 3) & 1) * 8) * C.kRowBytes
            v_chunk = wig * C.kColTiles + (L >> 4)
            kT = C.kKeyTiles
            for kk in range(4):
                a = []
                for mt in range(C.kMTiles):
                    lo = sP[(group * C.kGroupWarps + (2*kk) // kT, mt, (2*kk) % kT)]
                    hi = sP[(group * C.kGroupWarps + (2*kk+1) // kT, mt, (2*kk+1) % kT)]
                    a.append(np.stack([lo[0], lo[1], hi[0], hi[1]]))
                if C.kFp8:
                    f8x = (L >> 1) & 3
                    v8_lane = (xr + ((L >> 3) & 1) * 8) * C.kStageRowBytes
                    v8_chunk = wig * C.kColTiles // 2 + (L >> 4)
                    per = 4 if C.kColTiles % 4 == 0 else 2
                    for jp in range(C.kColTiles // per):
                        r = sm.ldsm_bytes(kbuf + v8_lane + kk * 16 * C.kStageRowBytes + (((v8_chunk + per // 2 * jp) ^ f8x) << 4), per, trans=True)
                        for ci in range(per // 2):
                            for mt in range(C.kMTiles):
                                mma(o[warp, mt, per*jp + 2*ci], a[mt], even(r[2*ci]), even(r[2*ci+1]))
                                mma(o[warp, mt, per*jp + 2*ci + 1], a[mt], odd(r[2*ci]), odd(r[2*ci+1]))
                else:
                    for np_ in range(C.kColTiles // 2):
                        b = sm.ldsm_x4(kbuf + v_lane + kk * 16 * C.kRowBytes + (((v_chunk + 2*np_) ^ xr) << 4), trans=True)
                        for mt in range(C.kMTiles):
                            mma(o[warp, mt, 2*np_], a[mt], b[0], b[1])
                            mma(o[warp, mt, 2*np_+1], a[mt], b[2], b[3])
    # epilogue
    res = {}  # head -> (row o [kr], m, l)
    lsum = {}
    for warp in range(8):
        group, wig = warp // C.kGroupWarps, warp % C.kGroupWarps
        for mt in range(C.kMTiles):
            for h in range(2):
                l = l_run[warp, mt, h].reshape(8, 4).sum(1)
                for gg in range(8): lsum[(group, wig, mt*16 + gg + 8*h)] = l[gg]
    for warp in range(8):
        group, wig = warp // C.kGroupWarps, warp % C.kGroupWarps
        col0 = wig * C.kColTiles * 8 + 2 * T4
        col4 = wig * C.kColTiles * 8 + 4 * T4
        for mt in range(C.kMTiles):
            for h in range(2):
                for l in range(32):
                    g = l >> 2
                    r = group * C.kGroupRows + mt * 16 + g + 8 * h
                    if r >= rows: continue
                    ltot = sum(lsum[(group, w, mt*16 + g + 8*h)] for w in range(C.kGroupWarps))
                    ent = res.setdefault(h0 + r, [np.full(C.kKvRank, np.nan), None, None])
                    for j in range(C.kColTiles):
                        for e in range(2):
                            col = col4[l] + 16 * (j // 2) + 2 * e + j % 2 if C.kFp8 else col0[l] + 8 * j + e
                            assert np.isnan(ent[0][col]), "two fragments write one output column"
                            ent[0][col] = o[warp, mt, j, l, 2*h + e]
                    if wig == 0 and T4[l] == 0:
                        ent[1] = m_run[warp, mt, h, l]; ent[2] = ltot
    return res

def reference(q, keys, kr, scale, visible):
    s = (q.astype(np.float64) @ keys.T.astype(np.float64)) * scale
    s = np.where(visible[None, :], s, -np.inf)
    s = s - s.max(1, keepdims=True)
    p = np.exp(s); p /= p.sum(1, keepdims=True)
    return p @ keys[:, :kr].astype(np.float64)

def test(latent, kr, wide, heads, nk, num_splits, tree=None, seed=0, fp8=False):
    rng = np.random.default_rng(seed)
    C = Cfg(latent, kr, wide, fp8)
    keys = bf16(rng.standard_normal((nk, latent)))
    q = bf16(rng.standard_normal((heads, latent)) * 0.3)
    scale = 0.5
    masked_from = nk - (len(tree) if tree is not None else 0)
    def mask_fn(k):
        return True if tree is None or k < masked_from else bool(tree[k - masked_from])
    visible = np.array([mask_fn(k) for k in range(nk)])
    ref = reference(q, keys, kr, scale, visible)
    chunk = (nk + num_splits - 1) // num_splits
    chunk = (chunk + 63) // 64 * 64
    head_tiles = (heads + C.kRows - 1) // C.kRows
    parts = {}
    for hg in range(head_tiles):
        for split in range(num_splits):
            ks, ke = split * chunk, min(nk, split * chunk + chunk)
            if ke <= ks: continue
            r = run_block(C, q, lambda k: keys[k], heads, hg * C.kRows, ks, ke, scale, mask_fn)
            for h, v in r.items(): parts.setdefault(h, []).append(v)
    err = 0
    for h in range(heads):
        ps = parts[h]
        mx = max(p[1] for p in ps)
        den = sum(np.exp2(p[1] - mx) * p[2] for p in ps if p[1] != -np.inf)
        out = sum(np.exp2(p[1] - mx) * p[0] for p in ps if p[1] != -np.inf) / den
        assert not np.isnan(out).any(), h
        e = np.linalg.norm(out - ref[h]) / np.linalg.norm(ref[h])
        err = max(err, e)
    print(f"latent {latent} kr {kr} wide {wide} fp8 {fp8} heads {heads} nk {nk} splits {num_splits} tree {tree is not None}: worst row err {err:.2e}")
    assert err < 1e-2, "index model disagrees with the reference"
    return err

if __name__ == '__main__':
    test(160, 128, False, 4, 150, 1, seed=1)
    test(160, 128, True, 20, 130, 2, seed=2)
    test(160, 128, False, 16, 77, 1, tree=[1, 0, 1, 1, 0], seed=3)
    test(160, 128, True, 64, 200, 3, tree=[1, 0, 0, 1, 1, 0, 1], seed=4)
    test(160, 128, False, 4, 150, 1, seed=7, fp8=True)
    test(160, 128, True, 20, 130, 2, seed=8, fp8=True)
    test(160, 128, False, 16, 77, 1, tree=[1, 0, 1, 1, 0], seed=9, fp8=True)
    test(160, 128, True, 64, 200, 3, tree=[1, 0, 0, 1, 1, 0, 1], seed=10, fp8=True)
    if "--v3" in sys.argv[1:]:
        test(576, 512, False, 16, 100, 1, seed=5)
        test(576, 512, True, 40, 70, 1, seed=6)
        test(576, 512, False, 16, 100, 1, seed=11, fp8=True)
        test(576, 512, True, 40, 70, 1, seed=12, fp8=True)
