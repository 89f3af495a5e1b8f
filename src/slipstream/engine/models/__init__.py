"""Model families. One decoder implementation covers Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3."""
