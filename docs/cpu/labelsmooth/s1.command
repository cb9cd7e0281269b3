labelsmooth.py --arch resnet20 --epochs 6 --batch-size 128 --seed 1 
