"""Data layer: official splits, frames on disk, sampling, sample builders and the dataset.

Import from the modules themselves (``dataloader.splits``, ``dataloader.datasets``, ...): this
package imports nothing, so a light module (the splits) does not pull in torch and OpenCV.
"""
