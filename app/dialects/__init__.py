"""Other vendors' single-connect APIs (Smartlead, MailReach, lemlist), spoken over our engine.

Each vendor module is pure mapping: the vendor's request body to our single-connect record, and
the stored account to the vendor's answer. The web adapters (`app/web/dialects.py`) run the
same validation and `connect_account` as our own single connect between the two.
"""
