"""Official-rule scorers: VQAv2 (vqaEval.py), GQA (eval.py), COCO captions (pycocoevalcap).

CLI: `python -m llava_structlora.metrics {vqav2,gqa,caption} ...` (see __main__.py).
"""

from .caption import score_captions
from .common import MetricInputError
from .gqa import score_gqa, score_gqa_protocols
from .vqa import score_vqav2, score_vqav2_protocols, vqa_question_accuracy
from .vqa_normalize import evalai_answer_processor, normalize, process_digit_article, process_punctuation

__all__ = [
    "MetricInputError",
    "score_vqav2",
    "score_gqa",
    "score_vqav2_protocols",
    "score_gqa_protocols",
    "score_captions",
    "vqa_question_accuracy",
    "evalai_answer_processor",
    "normalize",
    "process_punctuation",
    "process_digit_article",
]
