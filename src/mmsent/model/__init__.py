"""The fusion model: text, video and audio encoders, masked fusion, emotion and sentiment heads."""
