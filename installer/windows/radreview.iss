; Inno Setup 6 script: the radreview installer for Windows (x64).
;
; Built by installer/windows_package.py (python installer/build.py --package), which passes:
;   /DAppVersion=0.1.0  /DNumericVersion=0.1.0  /DSourceDir=...\dist\radreview  /DOutputDir=...\dist\installers
;   /DIconFile=...\radreview.ico  /DRedistFile=...\vc_redist.x64.exe (optional)
;   /DSign (when a code-signing certificate is configured; then /Ssigntool=... is given too)
;
; One installer serves both audiences: it installs per user (no admin rights, under
; %LOCALAPPDATA%\Programs) by default and per machine (Program Files, all users) when the user
; chooses so in the first dialog or passes /ALLUSERS on the command line.

#ifndef AppVersion
  #error AppVersion must be defined (/DAppVersion=...)
#endif
#ifndef NumericVersion
  #define NumericVersion AppVersion
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\radreview"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist\installers"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\installer\icons\radreview.ico"
#endif

#define AppName "radreview"
#define AppExe "radreview.exe"
#define ProgId "radreview.dicom"

[Setup]
; A fixed AppId keeps upgrades and uninstall pointing at the same installation.
AppId={{6F0B7C52-3D1E-4B8A-9E55-2A7F1C4D9B31}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=radreview contributors
AppComments=Research use only. Not for clinical diagnosis.
VersionInfoVersion={#NumericVersion}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per-user by default; the dialog (or /ALLUSERS, /CURRENTUSER) switches to per-machine.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
ChangesAssociations=yes
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
SetupIconFile={#IconFile}
OutputDir={#OutputDir}
OutputBaseFilename={#AppName}-{#AppVersion}-windows-x64-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes
#ifdef Sign
; The uninstaller is signed too; the "signtool" command is given by /Ssigntool=... at build time.
SignTool=signtool
SignedUninstaller=yes
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "dcmassoc"; Description: "Open DICOM files (.dcm) with {#AppName}"; GroupDescription: "File associations:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
#ifdef RedistFile
Source: "{#RedistFile}"; DestDir: "{tmp}"; DestName: "vc_redist.x64.exe"; Flags: deleteafterinstall; Check: VCRedistNeeded
#endif

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Radiograph viewer with AI assistance (research use only)"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; HKA is HKLM for a per-machine install and HKCU for a per-user one.
Root: HKA; Subkey: "Software\Classes\{#ProgId}"; ValueType: string; ValueName: ""; ValueData: "DICOM image"; Flags: uninsdeletekey; Tasks: dcmassoc
Root: HKA; Subkey: "Software\Classes\{#ProgId}\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppExe},0"; Tasks: dcmassoc
Root: HKA; Subkey: "Software\Classes\{#ProgId}\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""; Tasks: dcmassoc
; Offered in "Open with" without taking the default from another DICOM viewer the user set.
Root: HKA; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: dcmassoc
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".dcm"; ValueData: ""; Flags: uninsdeletekey

[Run]
#ifdef RedistFile
; ONNX Runtime needs the Visual C++ 2015-2022 runtime (x64) at least as new as the one it was
; built with. Per machine: installed silently. Per user: the redistributable itself asks for
; elevation (it always installs machine-wide), so it runs with a visible progress window.
Filename: "{tmp}\vc_redist.x64.exe"; Parameters: "/install /quiet /norestart"; StatusMsg: "Installing the Visual C++ runtime..."; Check: VCRedistNeeded and IsAdminInstallMode; Flags: waituntilterminated
Filename: "{tmp}\vc_redist.x64.exe"; Parameters: "/install /passive /norestart"; StatusMsg: "Installing the Visual C++ runtime..."; Check: VCRedistNeeded and not IsAdminInstallMode; Flags: waituntilterminated shellexec; Verb: "runas"
#endif
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only what the app itself wrote next to its files; user settings and reader-study databases
; live in the user's profile and are kept.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

[Code]
// The runtime ONNX Runtime 1.2x needs: VC++ 14.40 or newer (Visual Studio 2022 17.10).
const
  MinVCMajor = 14;
  MinVCMinor = 40;

function VCRedistNeeded: Boolean;
var
  Installed, Major, Minor: Cardinal;
begin
  Result := True;
  if RegQueryDWordValue(HKLM64, 'SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64', 'Installed', Installed)
     and (Installed = 1)
     and RegQueryDWordValue(HKLM64, 'SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64', 'Major', Major)
     and RegQueryDWordValue(HKLM64, 'SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64', 'Minor', Minor) then
    Result := (Major < MinVCMajor) or ((Major = MinVCMajor) and (Minor < MinVCMinor));
end;
