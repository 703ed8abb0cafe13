"""Media I/O: photos in and out, video files and webcams, frame sources. Every failure is a
CainGANError with a message a user can read."""
