"""The audit layer: measures and reports what a model package does not say by itself.

One module per audit: ``pii`` (personal data in text files), ``robustness`` (accuracy under
perturbation, asked of the task), ``card`` (the Hugging Face model card built from the
measured reports); fairness and privacy join them. Integrity (the manifest of digests)
belongs to ``package`` (``package/manifest.py``): audit only calls it. This layer may import
package, metrics, data and engine (docs/ARCHITECTURE.md), never the CLI.
"""
