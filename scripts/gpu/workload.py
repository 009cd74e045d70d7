#!/usr/bin/env python3
"""A real GPU workload for scripts/gpu/sandbox-check.sh: a matrix multiply checked against the CPU.

Uses torch when it imports (CUDA or ROCm builds: both answer torch.cuda), else the CUDA driver API through ctypes
(libcuda.so.1, present wherever the NVIDIA driver is): a PTX kernel loaded with cuModuleLoadData, i.e. compiled by
the driver's JIT at run time, exactly the path MemoryDenyWriteExecute is suspected to break. Prints one JSON line.
Exit 0: the GPU computed the right result; 1: wrong result; 2: no usable GPU (the error is printed).
"""

from __future__ import annotations

import ctypes
import json
import random
import sys

# C[i] = sum_k A[i*n+k] * B[k*n+j] for one (row, col) per thread: a naive matmul kernel written for this check.
PTX = r"""
.version 6.0
.target sm_50
.address_size 64
.visible .entry matmul(.param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u32 pn)
{
  .reg .pred %p<3>; .reg .b32 %r<12>; .reg .b64 %rd<12>; .reg .f32 %f<5>;
  ld.param.u64 %rd1, [pa]; ld.param.u64 %rd2, [pb]; ld.param.u64 %rd3, [pc]; ld.param.u32 %r1, [pn];
  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2; cvta.to.global.u64 %rd3, %rd3;
  mov.u32 %r2, %ctaid.y; mov.u32 %r3, %ntid.y; mov.u32 %r4, %tid.y; mad.lo.s32 %r5, %r2, %r3, %r4;
  mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x; mov.u32 %r4, %tid.x; mad.lo.s32 %r6, %r2, %r3, %r4;
  setp.ge.u32 %p1, %r5, %r1; @%p1 bra DONE;
  setp.ge.u32 %p1, %r6, %r1; @%p1 bra DONE;
  mov.f32 %f1, 0f00000000; mov.u32 %r7, 0;
LOOP:
  mad.lo.s32 %r8, %r5, %r1, %r7; mul.wide.u32 %rd4, %r8, 4; add.s64 %rd5, %rd1, %rd4; ld.global.f32 %f2, [%rd5];
  mad.lo.s32 %r9, %r7, %r1, %r6; mul.wide.u32 %rd6, %r9, 4; add.s64 %rd7, %rd2, %rd6; ld.global.f32 %f3, [%rd7];
  fma.rn.f32 %f1, %f2, %f3, %f1;
  add.s32 %r7, %r7, 1; setp.lt.u32 %p2, %r7, %r1; @%p2 bra LOOP;
  mad.lo.s32 %r10, %r5, %r1, %r6; mul.wide.u32 %rd8, %r10, 4; add.s64 %rd9, %rd3, %rd8; st.global.f32 [%rd9], %f1;
DONE:
  ret;
}
"""
N = 128


def with_torch() -> dict[str, object]:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    product = (a.cuda() @ b.cuda()).cpu()
    err = ((product - a @ b).abs() / ((a @ b).abs() + 1)).max().item()
    return {"via": "torch", "device": torch.cuda.get_device_name(0), "n": 1024, "max_rel_err": err, "ok": err < 1e-3}


def with_driver_api() -> dict[str, object]:
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(name: str, *args: object) -> None:
        result = getattr(cuda, name)(*args)
        if result != 0:
            text = ctypes.c_char_p()
            cuda.cuGetErrorString(result, ctypes.byref(text))
            raise RuntimeError(f"{name}: {result} {text.value.decode() if text.value else ''}")

    check("cuInit", 0)
    device, context, module, kernel = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    check("cuDeviceGet", ctypes.byref(device), 0)
    name = ctypes.create_string_buffer(256)
    check("cuDeviceGetName", name, 256, device)
    check("cuCtxCreate_v2", ctypes.byref(context), 0, device)
    check("cuModuleLoadData", ctypes.byref(module), ctypes.c_char_p(PTX.encode()))  # driver JIT: PTX -> SASS
    check("cuModuleGetFunction", ctypes.byref(kernel), module, b"matmul")
    floats = ctypes.c_float * (N * N)
    a = floats(*(random.random() for _ in range(N * N)))
    b = floats(*(random.random() for _ in range(N * N)))
    c = floats()
    size = ctypes.sizeof(floats)
    pointers = [ctypes.c_uint64() for _ in range(3)]
    for pointer in pointers:
        check("cuMemAlloc_v2", ctypes.byref(pointer), ctypes.c_size_t(size))
    check("cuMemcpyHtoD_v2", pointers[0], a, ctypes.c_size_t(size))
    check("cuMemcpyHtoD_v2", pointers[1], b, ctypes.c_size_t(size))
    n = ctypes.c_uint32(N)
    params = (ctypes.c_void_p * 4)(*(ctypes.cast(ctypes.byref(p), ctypes.c_void_p) for p in (*pointers, n)))
    check("cuLaunchKernel", kernel, N // 16, N // 16, 1, 16, 16, 1, 0, None, params, None)
    check("cuCtxSynchronize")
    check("cuMemcpyDtoH_v2", c, pointers[2], ctypes.c_size_t(size))
    worst = 0.0
    for i in range(N):
        for j in range(N):
            ref = sum(a[i * N + k] * b[k * N + j] for k in range(N))
            worst = max(worst, abs(c[i * N + j] - ref) / (abs(ref) + 1))
    return {"via": "cuda-driver-ptx-jit", "device": name.value.decode(), "n": N, "max_rel_err": worst,
            "ok": worst < 1e-3}  # fmt: skip


def main() -> int:
    errors: list[str] = []
    for attempt in (with_torch,) if "--torch-only" in sys.argv else (with_torch, with_driver_api):
        try:
            result = attempt()
        except Exception as exc:  # report every way the GPU was not usable
            errors.append(f"{attempt.__name__}: {type(exc).__name__}: {exc}")
            continue
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    print(json.dumps({"ok": False, "errors": errors}))
    return 2


if __name__ == "__main__":
    sys.exit(main())
