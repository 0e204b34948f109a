import os
from medkd_other_mod import thing
