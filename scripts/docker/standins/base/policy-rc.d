#!/bin/sh
# No service starts while a package installs: there is no init in an image.
exit 101
