"""SpecDec++ loaded by transformers as a Hub `custom_generate` method: nothing to import but transformers.

    python examples/hub_method.py [--tiny] [--repo REPO_ID]

`model.generate(..., custom_generate=REPO_ID, trust_remote_code=True, draft_model=...)` makes transformers
fetch the repo's `custom_generate/generate.py`, check its `requirements.txt` (hf-specdecpp) and decode with it.
Without `--repo` the example writes the repo as `hf-specdecpp push-method` would publish it into a temporary
folder and loads it from there (offline); `--repo` loads a published one from the Hub.
"""

from __future__ import annotations

import tempfile

import torch

from common import arguments, chat_inputs, default_prompt, load


def main() -> None:
    parser = arguments(__doc__, max_new_tokens=64)
    parser.add_argument("--repo", default=None, help="a published method repo on the Hub (default: a local copy)")
    args = parser.parse_args()
    setup = load(args)
    inputs = chat_inputs(setup, [{"role": "user", "content": default_prompt(setup, "Write a Python function that "
                                                                                    "checks whether a number is prime.")}])
    with tempfile.TemporaryDirectory() as tmp:
        if args.repo is None:
            from hf_specdecpp.integration.hub_method import write_method_repo

            repo = str(write_method_repo(f"{tmp}/specdecpp-method"))
        else:
            repo = args.repo
        print(f"model.generate(..., custom_generate={repo!r}, trust_remote_code=True, draft_model=draft, head=head)")
        out = setup.target.generate(**inputs, custom_generate=repo, trust_remote_code=True, draft_model=setup.draft,
                                    head=setup.head, max_new_tokens=args.max_new_tokens, do_sample=False,
                                    return_dict_in_generate=True)
    reference = setup.target.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    prompt_length = inputs["input_ids"].shape[1]
    print(setup.tokenizer.decode(out.sequences[0, prompt_length:], skip_special_tokens=True))
    print(f"== {out.speculation_stats.summary()}")
    print(f"== same tokens as the target alone: {torch.equal(out.sequences, reference)}"
          + ("" if setup.tiny or setup.target.dtype == torch.float32 else
             " (bf16: the verify pass batches positions differently, so near-tie tokens may flip; float32 is exact)"))


if __name__ == "__main__":
    main()
