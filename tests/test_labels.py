from mmsent.labels import EMOTION_TO_INDEX, EMOTIONS, SENTIMENT_TO_INDEX, SENTIMENTS, label_maps


def test_meld_has_seven_emotions_and_three_sentiments():
    assert EMOTIONS == ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    assert SENTIMENTS == ("negative", "neutral", "positive")


def test_maps_are_inverse_of_the_orders():
    assert [EMOTIONS[EMOTION_TO_INDEX[n]] for n in EMOTIONS] == list(EMOTIONS)
    assert [SENTIMENTS[SENTIMENT_TO_INDEX[n]] for n in SENTIMENTS] == list(SENTIMENTS)
    assert label_maps() == {"emotion": list(EMOTIONS), "sentiment": list(SENTIMENTS)}
