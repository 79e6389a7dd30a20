"""The one label schema: MELD's 7 emotions and 3 sentiments, and their name<->index maps.

Every other module takes its labels from here; the order is the class index the model predicts.
"""

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")

EMOTION_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
SENTIMENT_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(SENTIMENTS)}

# The two classification heads, by the name used in metrics, logs and files.
TASKS: dict[str, tuple[str, ...]] = {"emotion": EMOTIONS, "sentiment": SENTIMENTS}


def label_maps() -> dict[str, list[str]]:
    """The label maps as written next to a trained model, so that it can be used alone."""
    return {task: list(names) for task, names in TASKS.items()}
