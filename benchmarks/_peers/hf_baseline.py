"""HF transformers baseline: the same prompts through `generate()` in this process.

There is no server here, so the numbers mean: what a team gets by batching requests through
plain transformers (fp32, eager, GGUF dequantized at load). There is no prefix cache across
calls, so the "cached" TTFT is simply a second cold prefill.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _peers.load import Messages, PromptSet


class HFBaseline:
    """SmolLM2 from the GGUF in fp32; left-padded batched greedy generate, EOS ignored."""

    def __init__(self, gguf: Path, threads: int = 2) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
        self._generate([[{"role": "user", "content": "Hello"}]], 2)  # lazy init not timed

    def _generate(self, prompts: list[Messages], new_tokens: int) -> tuple[float, int]:
        texts = [
            self.tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m in prompts
        ]
        batch = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        t0 = time.perf_counter()
        with self.torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        generated = (out.shape[1] - batch["input_ids"].shape[1]) * len(prompts)
        return time.perf_counter() - t0, generated

    def throughput(self, prompts: list[Messages], concurrency: int, max_tokens: int) -> dict:
        """One batch of `concurrency` prompts, all decoded together to max_tokens."""
        wall, tokens = self._generate(prompts[:concurrency], max_tokens)
        return {
            "requests": concurrency,
            "errors": 0,
            "wall_s": round(wall, 3),
            "output_tokens": tokens,
            "tok_s": round(tokens / wall, 2),
            "mean_completion_tokens": tokens / concurrency,
            "note": "one generate() batch of `concurrency` prompts",
        }

    def single(self, prompt: Messages, max_tokens: int, runs: int) -> dict:
        """Decode rate: (max_tokens - 1) tokens over t(max_tokens) - t(1 token)."""
        rates = []
        for _ in range(runs):
            t_one, _ = self._generate([prompt], 1)
            t_all, n = self._generate([prompt], max_tokens)
            rates.append((n - 1) / (t_all - t_one))
        return {"decode_tok_s": round(statistics.median(rates), 2), "runs": rates}

    def ttft(self, prompts: PromptSet) -> dict:
        cold = [self._generate([a], 1)[0] for a, _ in prompts.long_pairs]
        warm = [self._generate([b], 1)[0] for _, b in prompts.long_pairs]
        return {
            "cold_p50_ms": round(statistics.median(cold) * 1000, 1),
            "cached_p50_ms": round(statistics.median(warm) * 1000, 1),
            "note": "no cross-request prefix cache: the 'cached' prompt is prefilled cold",
        }
