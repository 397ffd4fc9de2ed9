"""The Excel workbook: its layout as data, the template builder and the package-level tools."""
