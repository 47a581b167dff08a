"""A small byte-level BPE tokenizer trained locally, wrapped for transformers, lm-eval and vLLM."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"


def train_tokenizer(texts: Iterable[str], whole_words: Iterable[str] = (),
                    vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Return a byte-level BPE tokenizer of `vocab_size` tokens trained on `texts`, plus one token per whole word.

    `whole_words` (the zoo's invented names) become added tokens, as new terms do when a vocabulary is
    extended for a domain: a model learns a name as one embedding, not as a spelling of sub-words.

    Digits are split one per token so that numbers share the ten digit embeddings (arithmetic generalises
    across numbers instead of memorising one token per number). There is no post-processor: encoding never
    adds BOS/EOS, so lm-eval's HFLM and vLLM (which both encode with the tokenizer's defaults) feed the model
    exactly the ids it was trained on.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(word, single_word=True) for word in whole_words])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        model_max_length=128, clean_up_tokenization_spaces=False,
    )
