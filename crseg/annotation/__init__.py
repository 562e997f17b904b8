"""GLCoT annotation of real datasets by a teacher MLLM (tools/dataset_converters/glcot_annotate.py).

items.py (what to annotate) -> prompt.py (what the teacher is asked) -> teachers.py (who
answers) -> quality.py (what is kept) -> writer.py (resumable JSONL) ; annotator.py runs it all.
"""
from .annotator import Annotator, RunStats, side_paths
from .items import (AnnotationItem, LoadedItem, collect_items, default_explanatory,
                    load_explanations, load_item)
from .prompt import build_prompt
from .quality import QualityGate, Verdict
from .teachers import AdapterTeacher, OpenAITeacher, Reply, build_adapter_teacher
from .writer import JsonlWriter, read_jsonl, repair_tail

__all__ = ['Annotator', 'RunStats', 'side_paths', 'AnnotationItem', 'LoadedItem',
           'collect_items', 'default_explanatory', 'load_explanations', 'load_item',
           'build_prompt', 'QualityGate', 'Verdict', 'AdapterTeacher', 'OpenAITeacher', 'Reply',
           'build_adapter_teacher', 'JsonlWriter', 'read_jsonl', 'repair_tail']
