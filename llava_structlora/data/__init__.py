"""LLaVA data pipeline: vicuna_v1 formats and their chat templates, lazy supervised dataset, collators."""

from .chat_template import attach_chat_templates, chat_templates, jinja_chat_template
from .collator import DataCollatorForSupervisedDataset, collate_for_generation
from .conversation import (
    CONV_TEMPLATES,
    DEFAULT_CONV_TEMPLATE,
    IGNORE_INDEX,
    IMAGE_TOKEN,
    VICUNA_SYSTEM,
    ConversationError,
    build_prompt,
    conv_system,
    conversation_segments,
)
from .dataset import BadRecordError, LazySupervisedDataset, resolve_image_folder
from .encoding import (
    encode_conversation,
    encode_prompt,
    expand2square,
    image_size_of,
    is_anyres,
    load_image,
    load_image_and_size,
    mean_colour,
    num_image_tokens,
    preprocess_images,
)

__all__ = [
    "CONV_TEMPLATES",
    "DEFAULT_CONV_TEMPLATE",
    "conv_system",
    "attach_chat_templates",
    "chat_templates",
    "jinja_chat_template",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "VICUNA_SYSTEM",
    "ConversationError",
    "BadRecordError",
    "build_prompt",
    "conversation_segments",
    "LazySupervisedDataset",
    "resolve_image_folder",
    "DataCollatorForSupervisedDataset",
    "collate_for_generation",
    "encode_conversation",
    "encode_prompt",
    "expand2square",
    "load_image",
    "mean_colour",
    "num_image_tokens",
    "image_size_of",
    "is_anyres",
    "load_image_and_size",
    "preprocess_images",
]
