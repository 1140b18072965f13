"""dysen: dynamics-aware text-to-video diffusion with an LLM dynamic scene manager (Dysen-VDM).

Importing the package is light: no torch, no model weights. Sub-packages load what they need.
"""

from dysen.errors import DysenError

__version__ = "0.1.0"
__all__ = ["DysenError", "__version__"]
