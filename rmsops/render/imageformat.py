"""What a figure is saved as (``plots.svg``): the suffix of its file and the media type of its data
URI. Its own module so that the command can find a bundle's figures without importing pandas."""

SUFFIX = ".svg"
MEDIA_TYPE = "image/svg+xml"
