"""ClientApp side: local training, distillation and knowledge on the public set."""
