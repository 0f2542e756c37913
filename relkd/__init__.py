"""relkd: distil LLM relevance judgements into small e-commerce search relevance students."""

__version__ = "0.1.0"
