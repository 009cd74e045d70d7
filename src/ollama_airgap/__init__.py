"""ollama-airgap: carry Ollama, its models and Open WebUI across an air gap as one verified bundle."""

__version__ = "0.1.0"
