"""The .sage grammar (sage.lark) ships as package data of `sagec.grammar`; see README.md here."""
