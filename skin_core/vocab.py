"""The fixed vocabularies every model, card and page shares: diagnoses, sexes and body sites."""

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

CLASS_NAMES = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}

# Malignant or pre-malignant diagnoses: the group a clinician must not miss.
MALIGNANT = ("akiec", "bcc", "mel")

SEXES = ("male", "female", "unknown")

# The 14 body sites HAM10000 records, plus "unknown" (15 values, as in the metadata CSV).
SITES = (
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand",
    "lower extremity", "neck", "scalp", "trunk", "upper extremity", "unknown",
)

UNKNOWN = "unknown"
