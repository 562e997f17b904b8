from .reasonseg_visualizer import ReasonSegVisualizer, render_prediction

__all__ = ['ReasonSegVisualizer', 'render_prediction']
