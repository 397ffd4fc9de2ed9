Attribute VB_Name = "CrmXl"
' crm_xl: the macros behind the workbook's buttons.
' Source of truth is this text file (workbook/vba/CrmXl.bas); `crm-xl template` builds it into
' workbook/crm_xl.xlsm. Edits made in the VBA editor are lost at the next build.
Option Explicit

' Refresh: recompute every output sheet, pivot source, chart table and the log from the Raw
' sheets (or the files named on Config) and the Config sheet. The work is done in Python by
' crm_xl.excel.refresh(), which reports progress in the status bar and shows input errors itself.
Sub Refresh()
    On Error GoTo failed
    If ThisWorkbook.Path = "" Then
        MsgBox "Save the workbook first (File > Save As, .xlsm), then press Refresh again.", _
               vbExclamation, "CRM refresh"
        Exit Sub
    End If
    Application.StatusBar = "CRM refresh: starting Python..."
    RunPython "import crm_xl.excel; crm_xl.excel.refresh()"
    ' On success the status bar keeps Python's final message (customers, months, time taken).
    Exit Sub
failed:
    Application.StatusBar = False
    Application.ScreenUpdating = True
    MsgBox "The refresh could not run: " & Err.Description & vbCrLf & vbCrLf & _
           "Check the Interpreter line on the xlwings.conf sheet and that crm-xl is installed " & _
           "in that Python (pip install crm-xl).", vbCritical, "CRM refresh"
End Sub
