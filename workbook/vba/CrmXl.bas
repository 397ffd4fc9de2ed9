Attribute VB_Name = "CrmXl"
' crm_xl: the macros behind the workbook's buttons.
' Source of truth is this text file (workbook/vba/CrmXl.bas); `crm-xl template` builds it into
' workbook/crm_xl.xlsm. Edits made in the VBA editor are lost at the next build.
Option Explicit

Private Const STARTING As String = "CRM refresh: starting Python..."

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
    Application.StatusBar = STARTING
    RunPython "import crm_xl.excel; crm_xl.excel.refresh()"
    ' On success the status bar keeps Python's final message (customers, months, time taken). When
    ' Python never ran, xlwings has shown its own error: the status bar must not go on saying
    ' "starting". CStr, because the status bar is False (not text) when Excel shows its own.
    If CStr(Application.StatusBar) = STARTING Then Application.StatusBar = False
    ' Insert Function help for the CRM_ functions (CrmFunctionHelp.bas; its errors are ignored there)
    RegisterFunctionHelp
    Exit Sub
failed:
    Application.StatusBar = False
    Application.ScreenUpdating = True
    MsgBox "The refresh could not run: " & Err.Description & vbCrLf & vbCrLf & _
           "Run  crm-xl doctor " & ThisWorkbook.Name & "  in a terminal: it checks the Python named on " & _
           "the xlwings.conf sheet and says what to fix (crm-xl excel-setup writes that line).", _
           vbCritical, "CRM refresh"
End Sub
