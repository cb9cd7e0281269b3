baseline.py --arch resnet20 --epochs 6 --batch-size 128 --epochs 46 --seed 0 
