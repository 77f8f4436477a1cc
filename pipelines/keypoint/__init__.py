"""The keypoint family (seed 002): slider-captcha keypoints (the gap and the slider piece)
found by a heatmap network, one model per captcha site, scope = site."""
