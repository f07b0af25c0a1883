"""`push_to_hub` / `hub_model_id` (issue #16.12): a trained model (a run's `final/`, or an `alignkit export`
directory) uploaded through `huggingface_hub` with a model card, as TRL's trainers push.

`prepare_upload` writes the model card (`README.md`, `huggingface_hub.ModelCard` with card data: base model,
library, tags, datasets) into the folder that is uploaded; `push_folder` creates the repository and uploads the
folder. A failed push (offline, no token, no permission) raises one `HubError` line saying what failed and how to
push again later; the trained model stays on disk either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.errors import AlignkitError


class HubError(AlignkitError):
    """An upload to the Hugging Face hub failed."""


def hub_repo_id(hub_model_id: str | None, output_dir: str | Path) -> str:
    """`hub_model_id`, else the output directory's name (transformers' default)."""
    return hub_model_id or Path(output_dir).resolve().name


def _card_text(repo_id: str, base_model: str | None, objective: str, data: str, lora: bool,
               settings: dict[str, Any]) -> str:
    lines = [f"# {repo_id}", "",
             f"Trained with [alignkit](https://github.com/alignkit/alignkit) `{objective}`"
             + (f" from `{base_model}`" if base_model else "") + (" as a LoRA adapter (PEFT)." if lora else "."),
             "", f"Training data: `{data}`." if data else "", "", "## Loading", "", "```python"]
    if lora:
        lines += ["from peft import AutoPeftModelForCausalLM", "",
                  f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")']
    else:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    lines += ["```", "", "## Training settings", ""]
    lines += [f"- `{k}`: `{v}`" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def prepare_upload(folder: str | Path, repo_id: str, *, base_model: str | None, objective: str, data: str = "",
                   lora: bool = False, settings: dict[str, Any] | None = None) -> Path:
    """Write the model card into `folder` (the directory to upload); returns the card's path."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    hub_base = base_model if base_model and not Path(base_model).is_absolute() and "/" in base_model else None
    card_data = ModelCardData(base_model=hub_base, library_name="peft" if lora else "transformers",
                              tags=["alignkit", objective, *(["lora"] if lora else [])],
                              datasets=[data] if data and "/" in data and not Path(data).exists() else None)
    text = _card_text(repo_id, base_model, objective, data, lora, settings or {})
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{text}")
    path = folder / "README.md"
    card.save(str(path))
    return path


def push_folder(folder: str | Path, repo_id: str, *, private: bool | None = None,
                commit_message: str = "alignkit: upload trained model") -> str:
    """Create `repo_id` (if needed) and upload `folder`; returns the commit URL. Any failure is one HubError."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                 repo_type="model")
    except Exception as e:  # noqa: BLE001 - offline, auth, permission: every cause ends the push the same way
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:240]
        raise HubError(f"push_to_hub {repo_id}: {type(e).__name__}: {reason}; the model is saved in {folder}; "
                       f"push it later with `alignkit export RUN OUT --push-to-hub --hub-model-id {repo_id}`"
                       ) from None
    return str(getattr(info, "commit_url", info))
