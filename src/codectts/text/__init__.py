"""Text front-end: normalisation, sentence splitting, character and phoneme tokenizers."""
from codectts.text.normalize import normalize_for_wer, normalize_text
from codectts.text.split import split_sentences
from codectts.text.tokenizers import (
                                      BOS_ID,
                                      EOS_ID,
                                      PAD_ID,
                                      CharTokenizer,
                                      PhonemeTokenizer,
                                      Tokenizer,
                                      load_tokenizer,
                                      phonemize,
                                      tokenizer_from_dict,
)

__all__ = ["normalize_text", "normalize_for_wer", "split_sentences", "CharTokenizer", "PhonemeTokenizer",
           "Tokenizer", "load_tokenizer", "tokenizer_from_dict", "phonemize", "PAD_ID", "BOS_ID", "EOS_ID"]
