"""Built-in corpora; importing this package registers them."""

from dgqa_data.corpora import bid, folder, kadid10k, kadis700k, koniq10k, livec, pipal  # noqa: F401
from dgqa_data.corpora.base import Corpus, CorpusError, Item, Skip, get_corpus, list_corpora, register

__all__ = ["Corpus", "CorpusError", "Item", "Skip", "get_corpus", "list_corpora", "register"]
