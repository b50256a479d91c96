"""BLEU as the field reports it, and as the paper did.

- `bleu`: sacreBLEU's corpus BLEU on detokenized text (its default 13a
  tokenization), with the signature that says how it was computed.
- `bleu_tokenized`: the paper's number (`state_of_sparsity/sparse_transformer/
  decode/get_ende_bleu.sh`): Unicode punctuation normalized in the
  hypotheses, Moses tokenization (German) of hypotheses and references,
  compounds split as `rich ##AT##-##AT## text`, then `multi-bleu.perl`'s
  corpus BLEU (case-sensitive, no further tokenization): sacreBLEU with
  `tokenize="none"`. The Moses steps use sacremoses.
"""

import dataclasses
import re

_COMPOUND = re.compile(r"(\S)-(\S)")


@dataclasses.dataclass(frozen=True)
class BleuScores:
    """Attributes:
        bleu: sacreBLEU on detokenized text.
        bleu_tokenized: the paper's Moses-tokenized, compound-split BLEU.
        signature: sacreBLEU's signature of `bleu`.
    """

    bleu: float
    bleu_tokenized: float
    signature: str


def _check(hypotheses, references):
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} translations for {len(references)} references"
        )


def sacrebleu_score(hypotheses, references):
    """`(score, signature)` of sacreBLEU on detokenized text."""
    # sacreBLEU and sacremoses load when BLEU is computed: a run that scores
    # no BLEU (`bleu_examples` 0) works without them.
    import sacrebleu

    _check(hypotheses, references)
    metric = sacrebleu.metrics.BLEU()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return score.score, str(metric.get_signature())


def split_compounds(text):
    """`rich-text` -> `rich ##AT##-##AT## text` (as the paper's script)."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", text)


def moses_tokenize(sentences, language="de", normalize=False):
    """Moses-tokenized sentences (sacremoses; `normalize`: first replace
    Unicode punctuation, as `replace-unicode-punctuation.perl`)."""
    # Loaded when BLEU is computed (see `sacrebleu_score`).
    from sacremoses import MosesPunctNormalizer
    from sacremoses import MosesTokenizer

    tokenizer = MosesTokenizer(lang=language)
    normalizer = MosesPunctNormalizer(lang=language) if normalize else None
    result = []
    for sentence in sentences:
        if normalizer is not None:
            sentence = normalizer.replace_unicode_punct(sentence)
        result.append(tokenizer.tokenize(sentence, return_str=True, escape=True))
    return result


def tokenized_bleu(hypotheses, references, language="de"):
    """The paper's BLEU: Moses tokenization, compound splitting, then
    multi-bleu.perl's corpus BLEU."""
    # Loaded when BLEU is computed (see `sacrebleu_score`).
    import sacrebleu

    _check(hypotheses, references)
    hyps = [split_compounds(s) for s in moses_tokenize(hypotheses, language, normalize=True)]
    refs = [split_compounds(s) for s in moses_tokenize(references, language)]
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score


def score(hypotheses, references, language="de"):
    """Both BLEU scores of `hypotheses` against `references`."""
    value, signature = sacrebleu_score(hypotheses, references)
    return BleuScores(value, tokenized_bleu(hypotheses, references, language), signature)
