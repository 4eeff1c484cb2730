"""``cs336 generate --checkpoint PATH --tokenizer DIR --prompt TEXT``: sample a continuation
from a trained model (a thin front to :func:`cs336.generation.generate`)."""

from __future__ import annotations

import argparse

from cs336.cli._common import add_checkpoint_and_tokenizer, add_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_and_tokenizer(parser)
    parser.add_argument(
        "--prompt",
        default="",
        help="text to continue (default: empty, i.e. start a new document after <|endoftext|>)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="tokens to sample at most, past the model's context if need be (the window "
        "slides) (default: fill the model's context)",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=1,
        help="samples to draw, decoded as one batch; each is printed under a header line "
        "when there are several (default 1)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="softmax temperature; 0 is greedy decoding (default 0.8)",
    )
    parser.add_argument(
        "--top-p", type=float, default=0.95, help="nucleus sampling mass, in (0, 1] (default 0.95)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    add_device(parser, "sample")


def run(args: argparse.Namespace) -> int:
    import torch

    from cs336.cli._common import check_device, model_and_tokenizer
    from cs336.generation import sample_texts

    device = check_device(args.device)
    model, tokenizer = model_and_tokenizer(args.checkpoint, args.tokenizer, device)
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    texts = sample_texts(
        model,
        tokenizer,
        args.prompt,
        args.num_samples,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        generator=generator,
    )
    for i, text in enumerate(texts, 1):
        if len(texts) > 1:
            print(f"--- sample {i} of {len(texts)} ---")
        print(args.prompt + text)
    return 0
