"""Blocked attention: the self-attention of a bf16 trunk on the CPU, for inference.

Why: in bf16 on the CPU, PyTorch's fused flash attention is slower at the ImageNet networks'
1024- and 256-token maps than three plain steps over blocks of query rows: a GEMM for the logits,
a softmax, a GEMM with v (docs/performance.md, ``benchmarks/cpu_kernels.py``). Each block's
[rows, T] logits stay in cache. The precision is the original's under autocast: bf16 logits, a
softmax the CPU kernel accumulates in float32, bf16 weights times v. Everywhere else (float32,
CUDA, training) SDPA is faster, or needed to keep activation memory linear in T, so this is not
part of ``AttentionBlock``: ``optimize_for_inference`` swaps ``BlockedAttentionBlock`` in.
"""

from __future__ import annotations

import torch

from .attention import AttentionBlock


def query_rows(tokens: int) -> int:
    """Query rows per block of ``blocked_attention``: 256, or the whole map if smaller.

    Measured on the CPU in bf16 (``benchmarks/cpu_kernels.py``, interleaved, one and two threads):
    whole 64- and 256-token maps were fastest in one block; at 1024 tokens 256-384 rows were, and
    all 1024 at once was slower than flash attention (its logits no longer stay in cache).
    """
    return min(tokens, 256)


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """Softmax attention of [B, H, T, ch] tensors as GEMM, softmax, GEMM per block of query rows.

    Returned token-major as [B, T, H*ch], like ``attend_tokens``. ``rows``: query rows per block
    (default ``query_rows(T)``).
    """
    b, h, t, ch = q.shape
    out = q.new_empty(b, t, h, ch)
    q = q * ch**-0.5  # the original's 1/sqrt(ch) logit scale, applied to the smaller operand
    keys = k.transpose(-1, -2)
    rows = rows or query_rows(t)
    for start in range(0, t, rows):
        weights = torch.softmax(torch.matmul(q[:, :, start : start + rows], keys), dim=-1)
        out[:, start : start + rows].copy_(torch.matmul(weights, v).transpose(1, 2))
    return out.reshape(b, t, h * ch)


class BlockedAttentionBlock(AttentionBlock):
    """An ``AttentionBlock`` whose bf16 CPU inference runs ``blocked_attention``.

    Same submodules and ``state_dict`` keys as the block it replaces (``from_block`` shares them).
    Everything else (float32, other devices, autograd, as for the guidance classifier's input
    gradient) runs the block's ordinary SDPA attention.
    """

    @classmethod
    def from_block(cls, block: AttentionBlock) -> BlockedAttentionBlock:
        with torch.device("meta"):  # throwaway submodules, replaced by the block's own
            new = cls(block.channels, block.num_heads, None, block.attention_order, block.use_checkpoint)
        new.norm, new.qkv, new.proj_out = block.norm, block.qkv, block.proj_out
        new.train(block.training)
        return new

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.device.type == "cpu" and q.dtype == torch.bfloat16 and not torch.is_grad_enabled():
            return blocked_attention(q, k, v)
        return super().attend(q, k, v)
