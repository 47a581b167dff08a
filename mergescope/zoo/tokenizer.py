"""A small byte-level BPE tokenizer trained locally, wrapped for transformers, lm-eval and vLLM."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"

# The zoo's chat format is its Q/A text itself: a user turn is its text as written ("Q: ...\nA:"), an
# assistant turn is " answer" and a blank line, a system turn is its text and a blank line. Rendered this way a
# chat of few-shot turns is exactly the plain few-shot prompt lm-eval builds (target delimiter " ", few-shot
# delimiter a blank line), so `--apply-chat-template` is exercised for real on models that never saw role tokens.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}{{ ' ' + message['content'] + '\\n\\n' }}"
    "{%- else -%}{{ raise_exception('the zoo chat template has no role ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def train_tokenizer(
    texts: Iterable[str], whole_words: Iterable[str] = (), vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    """Return a byte-level BPE tokenizer of `vocab_size` tokens trained on `texts`, plus one token per whole word.

    `whole_words` (the zoo's invented names) become added tokens, as new terms do when a vocabulary is
    extended for a domain: a model learns a name as one embedding, not as a spelling of sub-words.

    Digits are split one per token so that numbers share the ten digit embeddings (arithmetic generalises
    across numbers instead of memorising one token per number). There is no post-processor: encoding never
    adds BOS/EOS, so lm-eval's HFLM and vLLM (which both encode with the tokenizer's defaults) feed the model
    exactly the ids it was trained on.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(word, single_word=True) for word in whole_words])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped
