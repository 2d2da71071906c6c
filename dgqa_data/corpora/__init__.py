"""Built-in corpora; importing this package registers them."""

from dgqa_data.corpora import (  # noqa: F401
    agiqa3k,
    bid,
    csiq,
    folder,
    kadid10k,
    kadis700k,
    koniq10k,
    live,
    livec,
    pipal,
    spaq,
    tid2013,
)
from dgqa_data.corpora.base import Corpus, CorpusError, Item, Skip, get_corpus, list_corpora, register

__all__ = ["Corpus", "CorpusError", "Item", "Skip", "get_corpus", "list_corpora", "register"]
