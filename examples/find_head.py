"""Find the acceptance head for your draft/target pair on the Hub and decode with it.

    python examples/find_head.py [--tiny] [--draft DRAFT_ID] [--target TARGET_ID]

`AcceptanceHead.for_pair(draft_id, target_id)` lists the Hub's acceptance heads and keeps the one whose model
card names both models as `base_model` (and whose own training record agrees). A head for another pair is
refused with a message naming both pairs. With `--tiny` the example decodes tiny random models whose head it
finds on the Hub the environment points at (`HF_ENDPOINT`; the test suite runs a local one).
"""

from __future__ import annotations

from common import arguments, load

TINY_IDS = ("hf-specdecpp-tiny/draft", "hf-specdecpp-tiny/target")


def main() -> None:
    parser = arguments(__doc__, max_new_tokens=64)
    parser.add_argument("--draft", default="Qwen/Qwen2.5-Coder-0.5B-Instruct", help="the draft's Hub id")
    parser.add_argument("--target", default="Qwen/Qwen2.5-Coder-1.5B-Instruct", help="the target's Hub id")
    args = parser.parse_args()
    from hf_specdecpp import AcceptanceHead, SpecDecPPMethod

    draft_id, target_id = TINY_IDS if args.tiny else (args.draft, args.target)
    head = AcceptanceHead.for_pair(draft_id, target_id)
    print(f"found a head for {draft_id} -> {target_id}: trained for {head.draft_model_id} -> {head.target_model_id}, "
          f"policy {head.policy.threshold if head.policy else 'not calibrated'}")
    if args.tiny:
        setup = load(args)
        target, draft, tokenizer = setup.target, setup.draft, setup.tokenizer
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(target_id)
        target = AutoModelForCausalLM.from_pretrained(target_id, dtype="auto", device_map="auto")
        draft = AutoModelForCausalLM.from_pretrained(draft_id, dtype="auto").to(target.device)
    messages = [{"role": "user", "content": "w12 w40 w41" if args.tiny else "Write a binary search in Python."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(target.device)
    out = target.generate(**inputs, assistant_model=draft, candidate_generator=SpecDecPPMethod(head=head),
                          max_new_tokens=args.max_new_tokens, do_sample=False, return_dict_in_generate=True)
    print(tokenizer.decode(out.sequences[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    print(f"== {out.speculation_stats.summary()}")


if __name__ == "__main__":
    main()
