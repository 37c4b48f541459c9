"""A synthetic co-speech gesture corpus (espeak-ng speech + rule-based motion) and a paired BVH/WAV loader."""
