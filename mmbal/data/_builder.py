"""Common base of the mmbal TFDS builders: TensorFlow-free and array_record by default."""

import inspect

from etils import epath
import tensorflow_datasets as tfds


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A `GeneratorBasedBuilder` that writes array_record files unless told otherwise.

  Without TensorFlow, array_record is the only format TFDS can write.
  """

  def __init__(self, *, file_format="array_record", **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    # tfds 4.9.10's default implementation imports the `importlib_resources`
    # backport, which is only declared as a dependency for Python < 3.9.
    try:
      return epath.Path(inspect.getfile(cls))
    except (TypeError, OSError):  # E.g. a class defined interactively.
      return None
