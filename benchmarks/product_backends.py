"""Which library kernel could run the engine's products faster: MKL's `bmm` against oneDNN, one thread.

Run: python benchmarks/product_backends.py [--stack 16] [--rows 128] [--width 64]

The engine's products are `bmm` calls, which PyTorch's CPU build sends to MKL. On an AMD CPU, MKL takes
its generic code path (run with MKL_VERBOSE=1 to see it named), even where the CPU has AVX-512; oneDNN,
also inside PyTorch, picks its kernels by the CPU's features. This prints, in one run:

1. a large product (1024 x 1024 x 1024) through MKL (`torch.mm`) and through oneDNN
   (`torch.ops.mkldnn._linear_pointwise`): what each library reaches on this machine;
2. a stack's forward layer, [stack, rows, width] x [stack, width, width] with bias and ReLU, as
   `baddbmm` + `relu` (MKL, the engine's way) and as a grouped 1x1 convolution with the bias and the
   ReLU fused (oneDNN, `torch.ops.mkldnn._convolution_pointwise`, channels-last), with the largest
   difference between them (0 means the same bits);
3. the layer's backward (input, weight and bias gradients): two `bmm` and a sum (the engine's way),
   against `aten.convolution_backward` on the convolution's layout (PyTorch picks its own kernel there)
   and on a layout that makes PyTorch call oneDNN (rows as the batch, which costs reorders);
4. where numba is installed (it is not a dependency: `pip install numba`), the stack's product as a
   plain loop nest compiled by numba for this CPU (LLVM, multiply-adds contracted), as a first measure
   of what a product of our own reaches without intrinsics.
"""

from __future__ import annotations

import argparse
import time

import torch


def microseconds(fn, seconds: float = 0.5) -> float:
    for _ in range(5):
        fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=int, default=16)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    K, B, W = args.stack, args.rows, args.width
    gflops = lambda flop, us: f"{flop / us / 1e3:.1f} GFLOP/s"  # noqa: E731

    a = torch.randn(1024, 1024)
    flop = 2 * 1024**3
    mkl = microseconds(lambda: torch.mm(a, a))
    dnnl = microseconds(lambda: torch.ops.mkldnn._linear_pointwise(a, a, None, "none", [], ""))
    print(f"1024^3 product, one thread: MKL {gflops(flop, mkl)}, oneDNN {gflops(flop, dnnl)}")

    h, w, b = torch.randn(K, B, W), torch.randn(K, W, W), torch.randn(K, W)
    flop = 2 * K * B * W * W
    eager = microseconds(lambda: torch.baddbmm(b[:, None, :], h, w).relu_())
    # the same layer as a grouped 1x1 convolution: channels = models x units, rows along one axis
    cl = torch.channels_last
    x = h.transpose(1, 2).reshape(1, K * W, B, 1).contiguous(memory_format=cl)
    wc = w.transpose(1, 2).reshape(K * W, W, 1, 1).contiguous(memory_format=cl)
    conv = torch.ops.mkldnn._convolution_pointwise
    fused = lambda: conv(x, wc, b.flatten(), [0, 0], [1, 1], [1, 1], K, "relu", [], "")  # noqa: E731
    differ = (fused().view(K, W, B).transpose(1, 2) - torch.baddbmm(b[:, None, :], h, w).relu_()).abs().max()
    grouped = microseconds(fused)
    print(
        f"forward layer [{K}, {B}, {W}] x [{K}, {W}, {W}] + bias + ReLU: MKL baddbmm+relu {eager:.0f} us "
        f"({gflops(flop, eager)}), oneDNN fused grouped convolution {grouped:.0f} us "
        f"({gflops(flop, grouped)}); largest difference {differ.item():.1e}"
    )

    d = torch.randn(K, B, W)
    wt, ht = w.transpose(1, 2), h.transpose(1, 2)
    engine = microseconds(lambda: (torch.bmm(d, wt), torch.bmm(ht, d), d.sum(1)))
    backward = torch.ops.aten.convolution_backward
    g = d.transpose(1, 2).reshape(1, K * W, B, 1).contiguous(memory_format=cl)
    args_ = ([K * W], [1, 1], [0, 0], [1, 1], False, [0, 0], K, [True, True, True])
    torch_own = microseconds(lambda: backward(g, x, wc, *args_))
    xn, gn = x.permute(2, 1, 0, 3).contiguous(), g.permute(2, 1, 0, 3).contiguous()  # [rows, K*W, 1, 1]
    wn = wc.contiguous()
    onednn = microseconds(lambda: backward(gn, xn, wn, *args_))
    print(
        f"backward (three gradients): two bmm + sum {engine:.0f} us, convolution_backward on the "
        f"channels-last layout {torch_own:.0f} us, on the rows-as-batch layout (oneDNN, reorders) "
        f"{onednn:.0f} us"
    )

    try:
        import numba
    except ImportError:
        print("numba not installed: its loop nest is not measured")
        return
    import numpy as np

    @numba.njit(fastmath={"contract"}, boundscheck=False)
    def loop_bmm(x, w, out):  # out[k] = x[k] @ w[k], the columns innermost so they vectorize
        for k in range(x.shape[0]):
            for i in range(x.shape[1]):
                out[k, i, :] = 0.0
                for p in range(x.shape[2]):
                    a = x[k, i, p]
                    for j in range(w.shape[2]):
                        out[k, i, j] += a * w[k, p, j]

    h_np, w_np, out = h.numpy(), w.numpy(), np.empty((K, B, W), np.float32)
    loop = microseconds(lambda: loop_bmm(h_np, w_np, out))
    mkl = microseconds(lambda: torch.bmm(h, w))
    same = np.array_equal(out, torch.bmm(h, w).numpy())
    print(
        f"[{K}, {B}, {W}] x [{K}, {W}, {W}]: MKL bmm {mkl:.0f} us ({gflops(flop, mkl)}), numba "
        f"{numba.__version__} loop nest {loop:.0f} us ({gflops(flop, loop)}); same bits: {same}"
    )


if __name__ == "__main__":
    main()
