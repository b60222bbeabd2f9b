"""dgmix: anomalous machine sound detection under domain shift with DG-Mix.

Pipeline: data -> features -> models -> losses -> training -> scoring -> metrics -> cli.
Reference: Nejjar, Meunier-Pion, Frusque, Fink, "DG-Mix: Domain generalization for anomalous
sound detection based on self-supervised learning", DCASE 2022 Workshop.
"""

__version__ = "0.1.0"
