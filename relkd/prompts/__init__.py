"""Teacher prompts: item text, behaviour neighbours, the versioned templates, the CoT format."""

from relkd.prompts.cot_template import COT_SLOTS, CotTemplate, ParsedCot, parse_cot
from relkd.prompts.item_renderer import ItemRenderer
from relkd.prompts.prompt_template import MODES, PromptTemplate
from relkd.prompts.verbalizer import Verbalizer

__all__ = [
    "COT_SLOTS",
    "MODES",
    "CotTemplate",
    "ItemRenderer",
    "ParsedCot",
    "PromptTemplate",
    "Verbalizer",
    "parse_cot",
]
