"""Jinja chat templates generated from the conversation formats of ``conversation.py``.

Stock clients (``processor.apply_chat_template``, lmms-eval's ``llava_hf``, vLLM) prompt a model
through the chat template saved with its processor. A processor without one makes them stop, or
fall back to a template the model was not trained with (lmms-eval's ``--force_simple``: another
system prompt, prompts over the model's positions, scores collapse silently). Every processor this
project writes therefore carries one template per conversation format plus ``default`` = the
format the model was trained with (``attach_chat_templates``); transformers saves ``default`` as
``chat_template.jinja`` and the named ones under ``additional_chat_templates/<name>.jinja``.

The templates render exactly the string of ``conversation_segments``, so that
``processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)`` yields the
ids of ``encode_prompt`` / ``encode_conversation`` (tested per format, single and multi-turn).
They do not write BOS: like llava-hf's templates they rely on the processor call adding it, which
``apply_chat_template(tokenize=True)`` and the usual "render, then ``processor(text=...)``" flow
both do. Assistant answers sit in ``{% generation %}`` blocks, so ``return_assistant_tokens_mask``
marks exactly the tokens our training labels (the answers and their ``</s>``).

Messages use the HF format: ``{"role": "system"|"user"|"assistant", "content": str | blocks}``
with blocks ``{"type": "image"}`` / ``{"type": "text", "text": ...}``. As in LLaVA-1.5, only the
first user turn may carry (one) image, rendered ``<image>\\n`` before its text; a system message
replaces the format's system prompt; roles must alternate user/assistant.
"""

from __future__ import annotations

import json

from .conversation import CONV_TEMPLATES, IMAGE_TOKEN, ROLES, SEP, SEP2, conv_system


def _lit(text: str) -> str:
    """A Jinja string literal (JSON escapes are Jinja escapes)."""
    return json.dumps(text)


def _content_parts() -> str:
    """Jinja setting ``n_img`` and ``text`` from message ``m`` (string or blocks)."""
    img = _lit(IMAGE_TOKEN)
    return (
        "{%- set c = m['content'] -%}"
        "{%- if c is string -%}{%- set n_img = 0 -%}{%- set text = c -%}"
        "{%- else -%}{%- set n_img = c | selectattr('type', 'equalto', 'image') | list | length -%}"
        "{%- set text = c | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
        "{%- endif -%}"
        f"{{%- set n_img = n_img + text.count({img}) -%}}"
        f"{{%- set text = text.replace({img}, '') | trim -%}}"
    )


def jinja_chat_template(conv_template: str) -> str:
    """The Jinja chat template of one conversation format (``CONV_TEMPLATES`` name)."""
    system = conv_system(conv_template)
    user, assistant = _lit(f"{ROLES['human']}: "), _lit(f"{ROLES['gpt']}:")
    return "".join(
        [
            f"{{%- set ns = namespace(system={_lit(system)}) -%}}",
            "{%- set msgs = messages -%}",
            "{%- if msgs and msgs[0]['role'] == 'system' -%}",
            "{%- set m = msgs[0] -%}",
            _content_parts(),
            "{%- set ns.system = text -%}",
            "{%- set msgs = msgs[1:] -%}{%- endif -%}",
            "{%- if msgs and msgs[0]['role'] == 'assistant' -%}{%- set msgs = msgs[1:] -%}{%- endif -%}",
            f"{{%- if ns.system -%}}{{{{ ns.system + {_lit(SEP)} }}}}{{%- endif -%}}",
            "{%- for m in msgs -%}",
            "{%- if m['role'] != (loop.index0 % 2 == 0 and 'user' or 'assistant') -%}",
            "{{- raise_exception('roles must alternate user/assistant after an optional system message, got '"
            " + m['role'] + ' at turn ' + loop.index0 | string) -}}{%- endif -%}",
            _content_parts(),
            "{%- if m['role'] == 'user' -%}",
            "{%- if n_img > 1 or (n_img > 0 and loop.index0 > 0) -%}",
            "{{- raise_exception('LLaVA-1.5 conversations carry one image, in the first user turn') -}}{%- endif -%}",
            f"{{{{ {user} + ({_lit(IMAGE_TOKEN + chr(10))} if n_img else '') + text + {_lit(SEP)} }}}}",
            "{%- else -%}",
            f"{{{{ {assistant} }}}}{{% generation %}}{{{{ ' ' + text + {_lit(SEP2)} }}}}{{% endgeneration %}}",
            "{%- endif -%}",
            "{%- endfor -%}",
            f"{{%- if add_generation_prompt -%}}{{{{ {assistant} }}}}{{%- endif -%}}",
        ]
    )


def chat_templates(default: str) -> dict[str, str]:
    """Every format's template by name, plus ``default`` (the format the model was trained with)."""
    templates = {name: jinja_chat_template(name) for name in CONV_TEMPLATES}
    return {"default": jinja_chat_template(default), **templates}


def attach_chat_templates(processor, default: str):
    """Give ``processor`` (and its tokenizer) our templates, ``default`` first; returns it.

    The tokenizer gets the default one too, for text-only clients (vLLM, ``tokenizer.apply_chat_template``).
    """
    processor.chat_template = chat_templates(default)
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.chat_template = processor.chat_template["default"]
    return processor
