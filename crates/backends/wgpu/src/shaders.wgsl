// mobilebench's WGSL kernels for the zoo IR: NHWC f32, batch 1. Every entry point uses the
// same five bindings (unused ones are bound to a dummy buffer), so one bind-group layout
// serves them all. `p` holds the step's integer parameters (see engine.rs for each layout).

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

// Activation codes: 0 none, 1 relu, 2 relu6, 3 hard swish, 4 hard sigmoid, 5 GELU.
fn activate(x: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return max(x, 0.0); }
        case 2u: { return clamp(x, 0.0, 6.0); }
        case 3u: { return x * clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 4u: { return clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 5u: { return gelu(x); }
        default: { return x; }
    }
}

// x·Φ(x) = max(x, 0) − |x|·erfc(|x|/√2)/2, erfc by Abramowitz & Stegun 7.1.26 (|error| ≤
// 1.5e-7; WGSL has no erf): the native engine's form (its math.rs holds the same constants).
fn gelu(x: f32) -> f32 {
    let z = abs(x) * 0.70710678;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214138 + t * (-1.453152 + t * 1.0614054))));
    let erfc = poly * exp(-z * z);
    return max(x, 0.0) - 0.5 * abs(x) * erfc;
}

// Direct convolution (the stem, and depthwise as groups = channels), one thread per output.
// p: ih iw ic oh ow oc k stride pad_top pad_left groups act; weights HWIO [k][k][ic/g][oc].
@compute @workgroup_size(64)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ih = p[0]; let iw = p[1]; let ic = p[2]; let oh = p[3]; let ow = p[4]; let oc = p[5];
    let k = p[6]; let stride = p[7]; let pt = p[8]; let pl = p[9]; let groups = p[10];
    let index = gid.x + gid.y * 65535u * 64u;
    if (index >= oh * ow * oc) { return; }
    let o = index % oc;
    let ox = (index / oc) % ow;
    let oy = index / (oc * ow);
    let icg = ic / groups;
    let ocg = oc / groups;
    let g = o / ocg;
    var acc = bias[o];
    for (var ky = 0u; ky < k; ky++) {
        let y = i32(oy * stride + ky) - i32(pt);
        if (y < 0 || y >= i32(ih)) { continue; }
        for (var kx = 0u; kx < k; kx++) {
            let x = i32(ox * stride + kx) - i32(pl);
            if (x < 0 || x >= i32(iw)) { continue; }
            let base = (u32(y) * iw + u32(x)) * ic + g * icg;
            let wbase = (ky * k + kx) * icg * oc + o;
            for (var c = 0u; c < icg; c++) {
                acc += src[base + c] * weight[wbase + c * oc];
            }
        }
    }
    dst[index] = activate(acc, p[11]);
}

// Pointwise convolution as a GEMM, out[M × N] = in[M × K] · W[K × N] + bias, tiled: a
// workgroup of 8 × 8 threads computes a 32 × 32 tile, each thread a 4 × 4 block from
// operand tiles staged in workgroup memory. p: M N K act.
const TILE: u32 = 32u;
const KT: u32 = 16u;
var<workgroup> a_tile: array<f32, 512>; // TILE rows × KT
var<workgroup> b_tile: array<f32, 512>; // KT × TILE columns

@compute @workgroup_size(8, 8)
fn pointwise_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m = p[0]; let n = p[1]; let kk = p[2];
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    // Four rows of four columns, as vec4 accumulators (a private array indexed dynamically
    // would live in memory on CPU rasterisers).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let ar = lid.y * 4u * KT;
    let bc = lid.x * 4u;
    for (var k0 = 0u; k0 < kk; k0 += KT) {
        for (var i = 0u; i < 8u; i++) {
            let e = li + i * 64u;
            let r = row0 + e / KT;
            let ka = k0 + e % KT;
            var a = 0.0;
            if (r < m && ka < kk) { a = src[r * kk + ka]; }
            a_tile[e] = a;
            let kb = k0 + e / TILE;
            let c = col0 + e % TILE;
            var b = 0.0;
            if (kb < kk && c < n) { b = weight[kb * n + c]; }
            b_tile[e] = b;
        }
        workgroupBarrier();
        for (var t = 0u; t < KT; t++) {
            let bo = t * TILE + bc;
            let bv = vec4<f32>(b_tile[bo], b_tile[bo + 1u], b_tile[bo + 2u], b_tile[bo + 3u]);
            acc0 += a_tile[ar + t] * bv;
            acc1 += a_tile[ar + KT + t] * bv;
            acc2 += a_tile[ar + 2u * KT + t] * bv;
            acc3 += a_tile[ar + 3u * KT + t] * bv;
        }
        workgroupBarrier();
    }
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + bc + j;
            if (r < m && c < n) {
                dst[r * n + c] = activate(rows[i][j] + bias[c], p[3]);
            }
        }
    }
}

// The same GEMM with one thread per output and no staging: the baseline the tiled kernel is
// benchmarked against. p: M N K act.
@compute @workgroup_size(64)
fn pointwise_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = p[0]; let n = p[1]; let kk = p[2];
    let index = gid.x + gid.y * 65535u * 64u;
    if (index >= m * n) { return; }
    let r = index / n;
    let c = index % n;
    var acc = bias[c];
    for (var t = 0u; t < kk; t++) {
        acc += src[r * kk + t] * weight[t * n + c];
    }
    dst[index] = activate(acc, p[3]);
}

// Mean over H and W, one thread per channel. p: pixels channels.
@compute @workgroup_size(64)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = p[0]; let c = p[1];
    let ch = gid.x;
    if (ch >= c) { return; }
    var acc = 0.0;
    for (var i = 0u; i < pixels; i++) { acc += src[i * c + ch]; }
    dst[ch] = acc / f32(pixels);
}

// Fully connected on a vector, one thread per output; weights [in][out]. p: in out act.
@compute @workgroup_size(64)
fn fully_connected(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n_in = p[0]; let n_out = p[1];
    let o = gid.x;
    if (o >= n_out) { return; }
    var acc = bias[o];
    for (var i = 0u; i < n_in; i++) { acc += src[i] * weight[i * n_out + o]; }
    dst[o] = activate(acc, p[2]);
}

// Squeeze-excite's last step: scale each channel of `src` by the gate in `weight`.
// p: len channels.
@compute @workgroup_size(64)
fn scale_channels(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x + gid.y * 65535u * 64u;
    if (index >= p[0]) { return; }
    dst[index] = src[index] * weight[index % p[1]];
}

// Residual addition: dst = src + weight (the second operand). p: len.
@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x + gid.y * 65535u * 64u;
    if (index >= p[0]) { return; }
    dst[index] = src[index] + weight[index];
}

// Attention logits of every query row against the one shared key head:
// dst[r · M + j] = Σ_d src[r · kd + d] · weight[j · kd + d] (queries `[rows][kd]`, one row per
// pixel and head, the temperature already in them; keys `[M][kd]`). p: rows M kd.
@compute @workgroup_size(64)
fn attention_logits(@builtin(global_invocation_id) gid: vec3<u32>) {
    let rows = p[0]; let m = p[1]; let kd = p[2];
    let index = gid.x + gid.y * 65535u * 64u;
    if (index >= rows * m) { return; }
    let r = index / m;
    let j = index % m;
    var acc = 0.0;
    for (var d = 0u; d < kd; d++) { acc += src[r * kd + d] * weight[j * kd + d]; }
    dst[index] = acc;
}

// Softmax over each row of `src` (max-subtracted), one thread per row. p: rows M.
@compute @workgroup_size(64)
fn softmax_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let rows = p[0]; let m = p[1];
    let r = gid.x + gid.y * 65535u * 64u;
    if (r >= rows) { return; }
    let base = r * m;
    var mx = src[base];
    for (var j = 1u; j < m; j++) { mx = max(mx, src[base + j]); }
    var sum = 0.0;
    for (var j = 0u; j < m; j++) {
        let e = exp(src[base + j] - mx);
        dst[base + j] = e;
        sum += e;
    }
    for (var j = 0u; j < m; j++) { dst[base + j] = dst[base + j] / sum; }
}
