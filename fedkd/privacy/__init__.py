"""Privacy: differential privacy of uploaded knowledge (mechanisms, accountant) and DP-SGD students.
Imports no strategy or app code."""
