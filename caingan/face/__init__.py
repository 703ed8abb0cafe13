"""Face geometry: 68-point landmark detection, landmark images L(x), landmark edits, keyframes and
landmark files, crops and paste-back, and motion retargeting. Numpy/OpenCV, no networks."""
